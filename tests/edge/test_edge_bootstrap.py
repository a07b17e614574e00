"""A 1-server + 3-agent lab site end to end: bootstrap, no-op re-run, targeted restarts, faults, secrets, reset."""
import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from lab.lifecycle.inventory import K3S_VERSION, METALLB_VERSION
from lab.releases.artifacts import build_bundle

from helpers import REPO, json_result, kit, lab_site
from lab_checks import (ArgvSampler, all_starts, host_config, host_file, kubectl_json, mode, nodes_via_kubeconfig,
                        ready_nodes, ready_nodes_or_none)

SHARED_STATE = True  # one kit state for the module: re-runs keep the site's tokens, as on an operator's machine

HOSTS = ["edge-1", "edge-2", "edge-3", "edge-4"]
METALLB_IMAGES = "/var/lib/rancher/k3s/agent/images/metallb-images-amd64.tar"
BUNDLED_IMAGES = f"metallb/{METALLB_VERSION}/metallb-images-amd64.tar"
AIRGAP_IMAGES = f"k3s/{K3S_VERSION}/k3s-airgap-images-amd64.tar.zst"


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=4, servers=1)


@pytest.fixture(scope="module")
def kubeconfig(state):
    path = state / "kubeconfig"
    other = {"apiVersion": "v1", "kind": "Config", "current-context": "aks-dev",
             "clusters": [{"name": "aks-dev", "cluster": {"server": "https://aks-dev.example:443"}}],
             "users": [{"name": "aks-dev", "user": {"token": "aks-user-token"}}],
             "contexts": [{"name": "aks-dev", "context": {"cluster": "aks-dev", "user": "aks-dev"}}]}
    path.write_text(yaml.safe_dump(other))
    return path


def bootstrap(site: Path, kubeconfig: Path, *extra: str):
    done = kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(kubeconfig), *extra)
    return done, json_result(done)


@pytest.fixture
def converged(lab, kubeconfig):
    """The site bootstrapped: done here when a test runs alone (-k), so each test stands on its own."""
    if ready_nodes_or_none(lab) != set(HOSTS):
        done, _ = bootstrap(lab.site_file, kubeconfig)
        assert done.returncode == 0, done.stdout + done.stderr
    return lab


def test_bootstrap_brings_up_the_site(lab, kubeconfig, state, private_state):
    with ArgvSampler(lab) as argvs:
        done, hosts = bootstrap(lab.site_file, kubeconfig)
    assert done.returncode == 0, done.stderr
    assert {n: h["status"] for n, h in hosts.items()} == dict.fromkeys(HOSTS, "changed")
    assert hosts["edge-1"]["changed"] == ["os-prep", "artifacts", "config", "install", "metallb", "kubeconfig"]
    assert hosts["edge-2"]["changed"] == ["os-prep", "artifacts", "config", "install"]
    site_state = private_state / "mlops-edge-kit/sites/lab"
    server_pw, agent_pw = ((site_state / n).read_text().strip() for n in ("server-token", "agent-token"))
    assert all((site_state / n).stat().st_mode & 0o777 == 0o600 for n in ("server-token", "agent-token"))
    server_token = host_file(lab, "edge-1", "/var/lib/rancher/k3s/server/token").read_text().strip()
    agent_token = host_file(lab, "edge-1", "/var/lib/rancher/k3s/server/agent-token").read_text().strip()
    assert server_token.endswith(f"::server:{server_pw}") and agent_token.endswith(f"::node:{agent_pw}")
    assert (site_state / "cluster-ca").read_text().strip() == server_token[3:67]
    for name in HOSTS:
        unit = "k3s" if name == "edge-1" else "k3s-agent"
        assert mode(lab, name, "/etc/rancher/k3s/config.yaml") == 0o600
        assert mode(lab, name, "/usr/local/bin/k3s") == 0o755
        assert mode(lab, name, "/usr/local/bin/k3s-install.sh") == 0o755
        assert host_file(lab, name, "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst").is_file()
        assert host_file(lab, name, METALLB_IMAGES).read_bytes() == (lab.bundle / BUNDLED_IMAGES).read_bytes()
        assert mode(lab, name, METALLB_IMAGES) == 0o644
        assert lab.exec(name, f"systemctl is-active {unit}", check=False).returncode == 0
        assert lab.exec(name, f"systemctl is-enabled {unit}", check=False).returncode == 0
        assert host_config(lab, name)["node-name"] == name
    # the first server seeds the cluster with the short forms; agents join with the agent token, never the server's
    assert (host_config(lab, "edge-1")["token"], host_config(lab, "edge-1")["agent-token"]) == (server_pw, agent_pw)
    for name in HOSTS[1:]:
        assert host_config(lab, name)["token"] == agent_token
        assert server_pw not in host_file(lab, name, "/etc/rancher/k3s/config.yaml").read_text()
    assert host_config(lab, "edge-1")["disable"] == ["servicelb"] and "server" not in host_config(lab, "edge-1")
    assert host_config(lab, "edge-2")["server"] == f"https://{lab.host('edge-1').address}:6443"
    assert ready_nodes(lab) == set(HOSTS)
    pool = kubectl_json(lab, "get ipaddresspools.metallb.io -n metallb-system")["items"]
    assert [p["spec"]["addresses"] for p in pool] == [[lab.metallb_range]]
    assert kubectl_json(lab, "get svc -n default")["items"] == [] or all(
        not s["metadata"]["name"].startswith("kit-smoke") for s in kubectl_json(lab, "get svc -n default")["items"])
    config = yaml.safe_load(kubeconfig.read_text())
    assert {c["name"] for c in config["contexts"]} == {"aks-dev", "lab"} and config["current-context"] == "aks-dev"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    assert nodes_via_kubeconfig(kubeconfig, "lab", state / "client") == set(HOSTS)
    assert argvs.samples > 10
    for secret in (server_pw, agent_pw):  # the passwords are part of the full tokens too
        assert not [a for a in argvs.seen if secret in a]
        assert secret not in done.stdout + done.stderr


def test_a_rerun_changes_nothing_and_restarts_nothing(converged, lab, kubeconfig):
    before = all_starts(lab)
    done, hosts = bootstrap(lab.site_file, kubeconfig)
    assert done.returncode == 0
    assert {n: (h["status"], h["changed"]) for n, h in hosts.items()} == dict.fromkeys(HOSTS, ("ok", []))
    assert all_starts(lab) == before


def test_a_missing_metallb_images_archive_is_uploaded_again_and_only_it(converged, lab, kubeconfig):
    lab.exec("edge-4", f"rm -f {METALLB_IMAGES}")
    planned = json_result(kit("edge.plan", "--site", str(lab.site_file), "--json"))
    assert planned["edge-4"]["changed"] == [f"artifacts: {METALLB_IMAGES}"]
    before = all_starts(lab)
    done, hosts = bootstrap(lab.site_file, kubeconfig)
    assert done.returncode == 0, done.stderr
    assert hosts["edge-4"]["changed"] == ["artifacts", "install"] and all(hosts[n]["changed"] == [] for n in HOSTS[:3])
    assert host_file(lab, "edge-4", METALLB_IMAGES).read_bytes() == (lab.bundle / BUNDLED_IMAGES).read_bytes()
    assert all_starts(lab) == before  # imported into the running k3s, no restart
    version = METALLB_VERSION
    images = json.loads(lab.exec("edge-4", "k3s crictl images -o json").stdout)["images"]
    pinned = {tag for image in images if image["pinned"] for tag in image["repoTags"]}
    assert {f"quay.io/metallb/{name}:{version}" for name in ("controller", "speaker")} <= pinned  # image GC spares them


def test_plan_shows_nothing_to_do_after_bootstrap(converged, lab):
    hosts = json_result(kit("edge.plan", "--site", str(lab.site_file), "--json"))
    assert {n: h["status"] for n, h in hosts.items()} == dict.fromkeys(HOSTS, "ok")


def test_a_changed_agent_setting_restarts_only_the_agents(converged, lab, kubeconfig, tmp_path):
    site = lab_site(lab, tmp_path, **{"k3s.agentConfig": {"kubelet-arg": ["max-pods=50"]}})
    before = all_starts(lab)
    done, hosts = bootstrap(site, kubeconfig)
    assert done.returncode == 0, done.stderr
    assert hosts["edge-1"]["status"] == "ok"
    assert all(hosts[n]["changed"] == ["config", "install"] for n in HOSTS[1:])
    after = all_starts(lab)
    assert after["edge-1"] == before["edge-1"]
    assert all(after[n] == before[n] + 1 for n in HOSTS[1:])
    assert host_config(lab, "edge-3")["kubelet-arg"] == ["max-pods=50"]
    done, hosts = bootstrap(lab.site_file, kubeconfig)  # back to the lab's own settings
    assert done.returncode == 0 and ready_nodes(lab) == set(HOSTS)


def test_a_host_down_fails_alone_and_a_rerun_converges(converged, lab, kubeconfig, tmp_path):
    site = lab_site(lab, tmp_path, **{"ssh.connectTimeout": 1, "ssh.retries": 1})
    lab.exec("edge-2", "rm -f /usr/local/bin/k3s-install.sh")
    lab.cut_link("edge-2")
    try:
        done, hosts = bootstrap(site, kubeconfig)
    finally:
        lab.restore_link("edge-2")
    assert done.returncode == 1
    assert hosts["edge-2"]["status"] == "failed" and "connect: cannot reach" in hosts["edge-2"]["error"]
    assert all(hosts[n]["status"] == "ok" for n in ("edge-1", "edge-3", "edge-4"))
    done, hosts = bootstrap(site, kubeconfig)
    assert done.returncode == 0 and hosts["edge-2"]["changed"] == ["artifacts", "install"]


def test_wrong_arch_fails_that_host_only(converged, lab, kubeconfig, tmp_path):
    document = yaml.safe_load(lab.site_file.read_text())
    document["hosts"][3]["arch"] = "arm64"
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(document))
    done, hosts = bootstrap(site, kubeconfig)
    assert done.returncode == 1
    assert hosts["edge-4"]["status"] == "failed"
    assert "preflight: arch is x86_64, the inventory says arm64" in hosts["edge-4"]["error"]
    assert all(hosts[n]["status"] == "ok" for n in HOSTS[:3])


def test_a_corrupted_bundle_artifact_is_refused_and_a_fixed_bundle_converges(converged, lab, kubeconfig, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(lab.bundle, bundle)
    images = bundle / AIRGAP_IMAGES
    images.write_bytes(images.read_bytes() + b"tampered")
    site = lab_site(lab, tmp_path, bundle=str(bundle))
    target = "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst"
    lab.exec("edge-3", f"rm -f {target}")
    done, hosts = bootstrap(site, kubeconfig)
    assert hosts["edge-3"]["status"] == "failed"
    assert f"bundle file {images} is corrupted" in hosts["edge-3"]["error"]
    assert all(hosts[n]["status"] == "ok" for n in ("edge-1", "edge-2", "edge-4"))
    assert not host_file(lab, "edge-3", target).exists()
    done, hosts = bootstrap(lab.site_file, kubeconfig)
    assert done.returncode == 0 and hosts["edge-3"]["changed"] == ["artifacts"]


def test_a_connection_dropped_mid_upload_is_resumed_on_a_new_connection(converged, lab, kubeconfig, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(lab.bundle, bundle)
    big = bundle / AIRGAP_IMAGES
    big.write_bytes(b"\0" * (48 << 20))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][AIRGAP_IMAGES] = hashlib.sha256(big.read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    site = lab_site(lab, tmp_path, bundle=str(bundle))
    # a 16 Mbit/s link: the 48 MiB upload takes ~25 s, so the session is dropped mid-upload, never after it
    lab.limit_link("edge-3", "16mbit")
    try:
        run = subprocess.Popen([str(REPO / "kit"), "edge.bootstrap", "--site", str(site), "--json", "--hosts",
                                "edge-3", "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        temp, home = None, host_file(lab, "edge-3", "/root")  # the login user's home, where uploads are staged
        deadline = time.monotonic() + 60
        while temp is None and time.monotonic() < deadline:
            partial = [p for p in home.glob(".kit-upload-edge-3-*") if p.stat().st_size > (4 << 20)]
            temp = partial[0] if partial else None
            time.sleep(0.1)
        assert temp is not None, "the upload never started"
        assert temp.stat().st_size < 24 << 20  # still mid-upload
        lab.exec("edge-3", "pkill -f '@notty'", check=False)  # drop the kit's SSH session on the host
    finally:
        lab.limit_link("edge-3", None)
    out, err = run.communicate(timeout=300)
    assert out.strip(), err
    hosts = {h["name"]: h for h in json.loads(out.strip().splitlines()[-1])["hosts"]}
    assert hosts["edge-3"]["status"] == "changed", err
    target = host_file(lab, "edge-3", "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst")
    assert target.stat().st_size == 48 << 20
    assert not list(target.parent.glob(".*kit-new"))
    assert not list(home.glob(".kit-upload-edge-3-*"))
    done, hosts = bootstrap(lab.site_file, kubeconfig)
    assert done.returncode == 0 and hosts["edge-3"]["changed"] == ["artifacts"]


def test_a_k3s_upgrade_restarts_every_host_once_onto_the_new_binary(converged, lab, kubeconfig, tmp_path):
    major_minor, patch = K3S_VERSION.split("+")[0].rsplit(".", 1)
    new_version = f"{major_minor}.{int(patch) + 1}+k3s1"
    bundle = build_bundle(tmp_path / "bundle", new_version, METALLB_VERSION)
    site = lab_site(lab, tmp_path, bundle=str(bundle), **{"k3s.version": new_version})
    before = all_starts(lab)
    done, hosts = bootstrap(site, kubeconfig)
    assert done.returncode == 0, done.stderr
    assert all("artifacts" in hosts[n]["changed"] for n in HOSTS)
    # the single server also stops and starts for its sqlite snapshot before the upgrade (edge_hosts/operations/snapshots.py)
    assert all_starts(lab) == {n: before[n] + (2 if n == "edge-1" else 1) for n in HOSTS}
    versions = {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"]
                for n in kubectl_json(lab, "get nodes")["items"]}
    assert versions == dict.fromkeys(HOSTS, new_version)
    done, hosts = bootstrap(lab.site_file, kubeconfig)  # back to the lab's own release
    assert done.returncode == 0 and ready_nodes(lab) == set(HOSTS)


def test_status_reports_nodes_versions_and_pool(converged, lab):
    done = kit("edge.status", "--site", str(lab.site_file), "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0
    assert report["metallb"]["pool"] == [lab.metallb_range]
    assert {h["name"]: (h["ready"], h["version"], h["active"], h["enabled"]) for h in report["hosts"]} == \
        dict.fromkeys(HOSTS, (True, K3S_VERSION, True, True))


def test_reset_removes_everything_agents_first(converged, lab, private_state):
    refused = kit("edge.reset", "--site", str(lab.site_file), stdin="n\n")
    assert refused.returncode == 2 and "give --yes" in refused.stderr and ready_nodes(lab) == set(HOSTS)
    snapshots = "/var/lib/rancher/k3s/server/db/snapshots"
    lab.exec("edge-1", f"mkdir -p {snapshots} && echo etcd > {snapshots}/on-demand-edge-1-1")
    done = kit("edge.reset", "--site", str(lab.site_file), "--yes", "--json")
    hosts = json_result(done)
    assert done.returncode == 0, done.stderr
    assert hosts["edge-2"]["changed"] == ["delete-node", "uninstall"] or hosts["edge-2"]["changed"] == ["uninstall"]
    for name in HOSTS:
        left = lab.exec(name, "ls -A /usr/local/bin /etc/rancher /var/lib/rancher /etc/systemd/system").stdout.split()
        assert not {"k3s", "k3s-install.sh", "k3s.service", "k3s-agent.service", "kubectl"} & set(left), left
        # this host's processes only (pgrep would also see other labs' hosts on a shared machine)
        assert not [a for a in lab.process_argvs(name) if a[-1:] in (["server"], ["agent"]) and "k3s" in a[-2]]
    kept = lab.exec("edge-1", "cat /var/lib/rancher/mlops-edge-kit-snapshots/*/on-demand-edge-1-1").stdout
    assert kept == "etcd\n" and "keep-snapshots" in hosts["edge-1"]["changed"]
    site_state = private_state / "mlops-edge-kit/sites/lab"
    assert (site_state / "server-token").is_file() and (site_state / "agent-token").is_file()  # a restore needs them
    done = kit("edge.reset", "--site", str(lab.site_file), "--yes", "--forget", "--json")
    assert done.returncode == 0 and not (site_state / "server-token").exists()
