"""edge.backup and edge.restore on lab sites: a private, checksummed copy of a fresh snapshot with the token a restore
needs, the last N kept here and on the site; an HA (etcd) site reset, bootstrapped fresh and restored from it; an
sqlite site restored from its datastore copy; bad backups refused before anything changes; no secret in output."""
import hashlib
import json

import pytest
import yaml


from edge_hosts.inventory import k3s_config
from edge_hosts.operations import snapshots
from edge_hosts.inventory.load import load_inventory

from helpers import json_result, kit, lab_site, valid_document, write_inventory
from lab_checks import ArgvSampler, host_file, kubectl_json, nodes_via_kubeconfig, ready_nodes
from test_edge_ssh import sudo_user  # noqa: F401 - a non-root login with a sudo password

SHARED_STATE = True  # one kit state for the module: re-runs keep the site's tokens, as on an operator's machine

SNAPSHOTS = "/var/lib/rancher/k3s/server/db/snapshots"
SERVER_CA = "/var/lib/rancher/k3s/server/tls/server-ca.crt"
SCHEDULE = "etcd-snapshot-schedule-cron"


@pytest.fixture(scope="module")
def ha(module_lab_factory, state):
    """Three servers (embedded etcd) and an agent, bootstrapped, backups kept two at a time."""
    lab = module_lab_factory(hosts=4, servers=3)
    site = lab_site(lab, state, "ha.yaml", backups={"dir": str(state / "backups"), "keep": 2})
    return lab, site


@pytest.fixture
def lab(ha):
    return ha[0]


def run(*args, **kwargs):
    return kit(*args, **kwargs)


def bootstrap(site, kubeconfig):
    done = run("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(kubeconfig))
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def configmap(lab, name, value):
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
                "data": {"value": value}}
    lab.exec("edge-1", "k3s kubectl apply -f -", input=json.dumps(manifest))


def configmaps(lab):
    return {i["metadata"]["name"]: i["data"] for i in kubectl_json(lab, "get configmaps")["items"]}


def backup(site):
    done = run("edge.backup", "--site", str(site), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return done, json.loads(done.stdout.strip().splitlines()[-1])


def site_secrets(state) -> list[str]:
    site_state = state / "xdg/mlops-edge-kit/sites/lab"
    return [(site_state / n).read_text().strip() for n in ("server-token", "agent-token")]


def test_backup_is_private_checksummed_with_the_token_and_the_last_two_kept(ha, state, tmp_path):
    lab, site = ha
    bootstrap(site, tmp_path / "kubeconfig")
    saved = [backup(site)[1]["backup"]["saved"] for _ in range(3)]
    directory = state / "backups" / "lab"
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        name for s in saved[1:] for name in (s["file"].rsplit("/", 1)[1], s["manifest"].rsplit("/", 1)[1]))
    assert directory.stat().st_mode & 0o777 == 0o700
    server_password = site_secrets(state)[0]
    for item in saved[1:]:
        data = open(item["file"], "rb").read()
        manifest = json.loads(open(item["manifest"]).read())
        assert hashlib.sha256(data).hexdigest() == item["sha256"] == manifest["sha256"]
        assert manifest["datastore"] == "etcd" and manifest["serverToken"] == server_password
        for path in (item["file"], item["manifest"]):
            assert (directory / path.rsplit("/", 1)[1]).stat().st_mode & 0o777 == 0o600
    on_site = lab.exec("edge-1", f"ls {SNAPSHOTS}").stdout.split()
    assert sorted(n for n in on_site if n.startswith("kit-backup-")) == sorted(
        s["file"].rsplit("/", 1)[1] for s in saved[1:])
    assert not (directory / saved[0]["file"].rsplit("/", 1)[1]).exists()


def test_restore_onto_a_reset_site_brings_the_cluster_state_back(ha, state, tmp_path):
    lab, site = ha
    kubeconfig = tmp_path / "kubeconfig"
    bootstrap(site, kubeconfig)
    configmap(lab, "plant-settings", "line-7")
    done, taken = backup(site)
    file = taken["backup"]["saved"]["file"]
    reset = run("edge.reset", "--site", str(site), "--yes", "--json")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    bootstrap(site, kubeconfig)
    assert "plant-settings" not in configmaps(lab)
    refused = run("edge.restore", "--site", str(site), "--snapshot", file, stdin="n\n")
    assert refused.returncode == 2 and "give --yes" in refused.stderr and "plant-settings" not in configmaps(lab)
    restored = run("edge.restore", "--site", str(site), "--snapshot", file, "--yes", "--json",
                   "--kubeconfig", str(kubeconfig))
    hosts = json_result(restored)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert configmaps(lab)["plant-settings"] == {"value": "line-7"}
    assert ready_nodes(lab) == {"edge-1", "edge-2", "edge-3", "edge-4"}
    assert {"upload", "stop", "restore", "start"} <= set(hosts["edge-1"]["changed"])
    assert "set-aside-db" in hosts["edge-2"]["changed"] and "start" in hosts["edge-4"]["changed"]
    # the re-bootstrapped servers' newer CA files, which k3s refuses, were set aside for the datastore's
    assert {"set-aside-ca"} <= set(hosts["edge-2"]["changed"]) & set(hosts["edge-3"]["changed"])
    assert "set-aside-ca" not in hosts["edge-1"]["changed"]   # --cluster-reset replaces its own
    assert len({host_file(lab, h, SERVER_CA).read_bytes() for h in ("edge-1", "edge-2", "edge-3")}) == 1
    # the CA is the snapshot's again: the refreshed kubeconfig and the joiners' tokens name it
    assert nodes_via_kubeconfig(kubeconfig, "lab", tmp_path / "tls") == {"edge-1", "edge-2", "edge-3", "edge-4"}
    for output in (done.stdout + done.stderr, restored.stdout + restored.stderr):
        assert not any(secret in output for secret in site_secrets(state))


def test_a_backup_through_sudo_shows_no_password_or_token(ha, state, tmp_path, sudo_user):
    lab, site = ha
    bootstrap(site, tmp_path / "kubeconfig")
    name, password, _ = sudo_user
    sudo_site = lab_site(lab, state, "ha-sudo.yaml", backups={"dir": str(state / "backups"), "keep": 2},
                         **{"ssh.user": name, "ssh.sudoPasswordEnv": "EDGE_TEST_SUDO"})
    with ArgvSampler(lab) as argvs:
        done = run("edge.backup", "--site", str(sudo_site), "--json", env={"EDGE_TEST_SUDO": password})
    assert done.returncode == 0, done.stdout + done.stderr
    secrets = [password, *site_secrets(state)]
    assert argvs.samples > 3 and not [a for a in argvs.seen for s in secrets if s in a]
    assert not [s for s in secrets if s in done.stdout + done.stderr]
    saved = json.loads(done.stdout.strip().splitlines()[-1])["backup"]["saved"]
    assert hashlib.sha256(open(saved["file"], "rb").read()).hexdigest() == saved["sha256"]


def test_a_damaged_backup_or_one_without_its_manifest_is_refused_before_anything_changes(ha, state, tmp_path):
    lab, site = ha
    bootstrap(site, tmp_path / "kubeconfig")
    item = backup(site)[1]["backup"]["saved"]
    damaged = tmp_path / "damaged"
    damaged.write_bytes(open(item["file"], "rb").read() + b"x")
    (tmp_path / "damaged.json").write_text(open(item["manifest"]).read())
    bare = tmp_path / "bare"
    bare.write_bytes(open(item["file"], "rb").read())
    before = lab.exec("edge-1", "systemctl show -p ActiveEnterTimestamp k3s").stdout
    for file, problem in ((damaged, "sha256 does not match its manifest"), (bare, "manifest cannot be read")):
        done = run("edge.restore", "--site", str(site), "--snapshot", str(file), "--yes")
        assert done.returncode == 2 and problem in done.stderr and str(file) in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert lab.exec("edge-1", "systemctl show -p ActiveEnterTimestamp k3s").stdout == before
    elsewhere = run("edge.backup", "--site", str(site), env={"XDG_CONFIG_HOME": str(tmp_path / "other-machine")})
    assert elsewhere.returncode == 2 and "no server token for site lab" in elsewhere.stderr


def test_an_sqlite_site_is_restored_from_its_datastore_copy_also_after_a_reset(lab_factory, tmp_path):
    lab = lab_factory(hosts=2, servers=1)
    site = lab_site(lab, tmp_path, "single.yaml", backups={"dir": str(tmp_path / "backups")})
    bootstrap(site, tmp_path / "kubeconfig")
    configmap(lab, "recipe", "v1")
    done, taken = backup(site)
    assert taken["backup"]["saved"]["datastore"] == "sqlite"
    assert taken["backup"]["saved"]["file"].endswith(".sqlite.tar.gz")
    assert lab.exec("edge-1", "systemctl is-active k3s").stdout.strip() == "active"   # started again after the copy
    configmap(lab, "recipe", "v2")
    restored = run("edge.restore", "--site", str(site), "--snapshot", taken["backup"]["saved"]["file"], "--yes",
                   "--json", "--kubeconfig", str(tmp_path / "kubeconfig"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert configmaps(lab)["recipe"] == {"value": "v1"}
    assert ready_nodes(lab) == {"edge-1", "edge-2"}
    assert "set-aside-ca" in json_result(restored)["edge-1"]["changed"]
    reset = run("edge.reset", "--site", str(site), "--yes", "--json")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    bootstrap(site, tmp_path / "kubeconfig")   # a new cluster: a new CA, newer than the backup's
    assert "recipe" not in configmaps(lab)
    restored = run("edge.restore", "--site", str(site), "--snapshot", taken["backup"]["saved"]["file"], "--yes",
                   "--json", "--kubeconfig", str(tmp_path / "kubeconfig"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert configmaps(lab)["recipe"] == {"value": "v1"}
    assert ready_nodes(lab) == {"edge-1", "edge-2"}
    assert nodes_via_kubeconfig(tmp_path / "kubeconfig", "lab", tmp_path / "tls") == {"edge-1", "edge-2"}
    relabelled = tmp_path / "relabelled"
    relabelled.write_bytes(open(taken["backup"]["saved"]["file"], "rb").read())
    manifest = json.loads(open(taken["backup"]["saved"]["manifest"]).read())
    (tmp_path / "relabelled.json").write_text(json.dumps({**manifest, "datastore": "etcd", "site": "other",
                                                          "k3sVersion": "v1.38.0+k3s1"}))
    refused = run("edge.restore", "--site", str(site), "--snapshot", str(relabelled), "--yes")
    assert refused.returncode == 2, refused.stderr
    assert "site: the backup is of site other, not lab" in refused.stderr
    assert "datastore: the backup holds an etcd datastore; the 1 server(s)" in refused.stderr
    assert "k3sVersion: the backup was taken with k3s v1.38.0+k3s1; the site pins v1.37.2+k3s1" in refused.stderr   # every problem at once


def test_ha_servers_get_the_kits_snapshot_schedule_unless_the_server_config_sets_it(tmp_path):
    document = valid_document()
    document["hosts"] += [{"name": f"s{i}", "address": f"10.9.0.{20 + i}", "role": "server", "arch": "x86_64"}
                          for i in (2, 3)]
    ha = load_inventory(str(write_inventory(tmp_path, document, "ha.yaml")))
    for host in ha.servers:
        config = yaml.safe_load(k3s_config.render_config(ha, host, None))
        assert (config[SCHEDULE], config["etcd-snapshot-retention"]) == ("0 */6 * * *", 8)
    assert SCHEDULE not in yaml.safe_load(k3s_config.render_config(ha, ha.agents[0], None))
    document["k3s"]["serverConfig"] = {"etcd-snapshot-retention": 30, "etcd-snapshot-dir": "/srv/snapshots"}
    own = load_inventory(str(write_inventory(tmp_path, document, "own.yaml")))
    config = yaml.safe_load(k3s_config.render_config(own, own.first_server, None))
    assert (config[SCHEDULE], config["etcd-snapshot-retention"]) == ("0 */6 * * *", 30)
    assert snapshots.snapshot_dir(own) == "/srv/snapshots" and snapshots.snapshot_dir(ha) == SNAPSHOTS
    single = load_inventory(str(write_inventory(tmp_path, valid_document(), "single.yaml")))
    assert SCHEDULE not in yaml.safe_load(k3s_config.render_config(single, single.first_server, None))
