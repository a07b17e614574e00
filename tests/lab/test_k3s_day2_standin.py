"""The stand-in k3s's day-2 behaviour, as docs.k3s.io describes it (github.com/k3s-io/docs: docs/cli/etcd-snapshot.md,
docs/datastore/backup-restore.md, docs/cli/certificate.md): on-demand snapshots named <name>-<node>-<unix time>,
none on sqlite, scheduled snapshots with retention, the cluster-reset restore (token needed, exits after its message,
reset-flag, peers must drop their db), leaf certificates of a set lifetime kept across restarts and rotated, agents'
certificates fetched from the server at every start and rotated on the agent (k3s pkg/agent/config, pkg/cli/cert)."""
import datetime
import json
import re
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.lab.test_k3s_standin import journal, server_url, start
from tests.lab.test_standins import kubectl, wait_for

TIMINGS = {"node_ready": 0.3, "heartbeat": 1.0, "retry": 0.3, "cert_days": 200}
PASSWORD = "lab-server-password"
SNAPSHOTS = "/var/lib/rancher/k3s/server/db/snapshots"
TLS = "/var/lib/rancher/k3s/server/tls"
RESET_DONE = ("Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. "
              "Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes")


def etcd_config(lab, **extra):
    return {"node-ip": lab.host("edge-1").address, "token": PASSWORD, "cluster-init": True, **extra}


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    lab = module_lab_factory(hosts=3, servers=1, timings=TIMINGS)
    start(lab, "edge-1", "server", etcd_config(lab))
    return lab


def run(lab, host, command, check=False):
    return lab.exec(host, command, check=check, timeout=60)


def configmap(lab, name):
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
                "data": {"k": "v"}}
    assert kubectl(lab, "apply -f -", stdin=json.dumps(manifest)).returncode == 0


def configmaps(lab, host="edge-1"):
    out = run(lab, host, "k3s kubectl get configmaps -o json", check=True).stdout
    return {item["metadata"]["name"] for item in json.loads(out)["items"]}


def snapshot_files(lab, host, directory=SNAPSHOTS):
    path = lab.host(host).path_on_host(directory)
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def saved_name(done) -> str:
    """The snapshot name a save logged."""
    return re.search(r"Snapshot (\S+) saved\.", done.stderr)[1]


def certificate(lab, host, name):
    return x509.load_pem_x509_certificate(lab.host(host).path_on_host(f"{TLS}/{name}.crt").read_bytes())


def test_on_demand_snapshots_are_named_after_name_node_and_time_listed_and_deleted(lab):
    before = int(time.time())
    saved = run(lab, "edge-1", "k3s etcd-snapshot save")
    named = run(lab, "edge-1", "k3s etcd-snapshot save --name kit")
    assert saved.returncode == 0 and named.returncode == 0, saved.stderr + named.stderr
    first = re.search(r"Snapshot (on-demand-edge-1-(\d+)) saved\.", saved.stderr)
    assert first and int(first[2]) >= before
    assert re.search(r"Snapshot kit-edge-1-\d+ saved\.", named.stderr)
    files = snapshot_files(lab, "edge-1")
    assert first[1] in files and any(f.startswith("kit-edge-1-") for f in files)
    assert lab.host("edge-1").path_on_host(f"{SNAPSHOTS}/{first[1]}").stat().st_mode & 0o777 == 0o600
    listing = run(lab, "edge-1", "k3s etcd-snapshot ls").stdout
    assert listing.split()[:4] == ["Name", "Location", "Size", "Created"]
    assert f"file://{SNAPSHOTS}/{first[1]}" in listing
    deleted = run(lab, "edge-1", f"k3s etcd-snapshot delete {first[1]}")
    assert deleted.returncode == 0 and f"Snapshot {first[1]} deleted." in deleted.stderr
    assert first[1] not in snapshot_files(lab, "edge-1")


def test_a_snapshot_needs_a_running_server(lab):
    run(lab, "edge-1", "systemctl stop k3s", check=True)
    try:
        done = run(lab, "edge-1", "k3s etcd-snapshot save")
        assert done.returncode == 1 and "level=fatal" in done.stderr and "127.0.0.1:6443" in done.stderr
    finally:
        run(lab, "edge-1", "systemctl start k3s", check=True)


def test_an_sqlite_server_has_no_etcd_snapshots(lab):
    start(lab, "edge-3", "server", {"node-ip": lab.host("edge-3").address})
    try:
        done = run(lab, "edge-3", "k3s etcd-snapshot save")
        assert done.returncode == 1
        assert 'level=fatal msg="Error: see server log for details: etcd datastore disabled"' in done.stderr
        db = lab.host("edge-3").path_on_host("/var/lib/rancher/k3s/server/db")
        assert (db / "state.db").is_file() and not (db / "etcd").exists()
        assert snapshot_files(lab, "edge-3") == []
    finally:
        run(lab, "edge-3", "systemctl stop k3s; /usr/local/bin/k3s-uninstall.sh")


def test_scheduled_snapshots_follow_the_cron_and_keep_the_retention(lab):
    directory = "/var/lib/rancher/lab-snapshots"
    config = etcd_config(lab, **{"etcd-snapshot-schedule-cron": "* * * * *", "etcd-snapshot-retention": 2,
                                 "etcd-snapshot-dir": directory})
    run(lab, "edge-1", f"mkdir -p {directory}; for t in 1000 1001 1002; do echo old > "
                       f"{directory}/etcd-snapshot-edge-1-$t; done; echo mine > {directory}/kit-edge-1-999")
    try:
        start(lab, "edge-1", "server", config)
        assert wait_for(lambda: any(re.fullmatch(r"etcd-snapshot-edge-1-\d{10}", f)
                                    for f in snapshot_files(lab, "edge-1", directory)), timeout=90)
        assert wait_for(lambda: len(snapshot_files(lab, "edge-1", directory)) == 3, timeout=10)
        kept = snapshot_files(lab, "edge-1", directory)
        assert "etcd-snapshot-edge-1-1002" in kept and "kit-edge-1-999" in kept   # other names are not pruned
        assert "Removing local snapshot" in journal(lab, "edge-1", "k3s")
    finally:
        start(lab, "edge-1", "server", etcd_config(lab))


def test_cluster_reset_restores_the_snapshot_then_exits_and_k3s_starts_normally(lab):
    configmap(lab, "before-snapshot")
    saved = run(lab, "edge-1", "k3s etcd-snapshot save --name restore-me")
    path = f"{SNAPSHOTS}/{saved_name(saved)}"
    configmap(lab, "after-snapshot")
    busy = run(lab, "edge-1", f"k3s server --cluster-reset --cluster-reset-restore-path={path}")
    assert busy.returncode == 1 and "address already in use" in busy.stderr   # k3s must be stopped first
    run(lab, "edge-1", "systemctl stop k3s", check=True)
    done = run(lab, "edge-1", f"k3s server --cluster-reset --cluster-reset-restore-path={path}")
    assert done.returncode == 0, done.stderr
    assert RESET_DONE in done.stderr
    db = lab.host("edge-1").path_on_host("/var/lib/rancher/k3s/server/db")
    assert (db / "reset-flag").exists() and any(p.name.startswith("etcd-old-") for p in db.iterdir())
    assert any(p.name.startswith("tls-") for p in db.parent.iterdir())
    again = run(lab, "edge-1", f"k3s server --cluster-reset --cluster-reset-restore-path={path}")
    assert again.returncode == 1 and "reset-flag" in again.stderr
    run(lab, "edge-1", "systemctl start k3s", check=True)
    assert not (db / "reset-flag").exists()
    names = configmaps(lab)
    assert "before-snapshot" in names and "after-snapshot" not in names


def test_a_restore_on_a_new_host_needs_the_token_the_snapshot_was_taken_with(lab):
    saved = run(lab, "edge-1", "k3s etcd-snapshot save --name move")
    name = saved_name(saved)
    data = lab.host("edge-1").path_on_host(f"{SNAPSHOTS}/{name}").read_bytes()
    target = lab.host("edge-3").path_on_host(f"/root/{name}")
    target.write_bytes(data)
    start(lab, "edge-3", "server", {"node-ip": lab.host("edge-3").address})   # a cluster of its own, its data gone
    run(lab, "edge-3", "systemctl stop k3s; rm -rf /var/lib/rancher/k3s/server/db /var/lib/rancher/k3s/server/token")
    own_serving = certificate(lab, "edge-3", "serving-kube-apiserver")
    start_cmd = "k3s server --cluster-reset --cluster-reset-restore-path=/root/" + name
    wrong = run(lab, "edge-3", f"{start_cmd} --token=not-the-token")
    assert wrong.returncode == 1
    assert "bootstrap data already found and encrypted with different token" in wrong.stderr
    right = run(lab, "edge-3", f"{start_cmd} --token={PASSWORD}")
    assert right.returncode == 0, right.stderr
    ca = "/var/lib/rancher/k3s/server/tls/server-ca.crt"
    assert lab.host("edge-3").path_on_host(ca).read_bytes() == lab.host("edge-1").path_on_host(ca).read_bytes()
    # started normally, the certificates its old CA signed are made anew under the restored CA
    start(lab, "edge-3", "server", {"node-ip": lab.host("edge-3").address, "token": PASSWORD, "cluster-init": True})
    restored_ca = certificate(lab, "edge-3", "server-ca")
    serving = certificate(lab, "edge-3", "serving-kube-apiserver")
    assert serving.serial_number != own_serving.serial_number
    for name in ("serving-kube-apiserver", "client-admin"):
        leaf = certificate(lab, "edge-3", name)
        restored_ca.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes,
                                        ec.ECDSA(leaf.signature_hash_algorithm))
    assert run(lab, "edge-3", "k3s kubectl get --raw /readyz").stdout == "ok"
    run(lab, "edge-3", "systemctl stop k3s; /usr/local/bin/k3s-uninstall.sh")


def test_a_peer_server_rejoins_a_reset_cluster_only_after_its_db_is_removed(lab):
    url = f"https://{lab.host('edge-1').address}:6443"
    token = lab.host("edge-1").path_on_host("/var/lib/rancher/k3s/server/token").read_text().strip()
    peer = {"node-ip": lab.host("edge-2").address, "server": url, "token": token}
    assert start(lab, "edge-2", "server", peer).returncode == 0
    for host in ("edge-2", "edge-1"):
        run(lab, host, "systemctl stop k3s", check=True)
    assert run(lab, "edge-1", "k3s server --cluster-reset").returncode == 0
    run(lab, "edge-1", "systemctl start k3s", check=True)
    run(lab, "edge-2", "systemctl start --no-block k3s", check=True)
    assert wait_for(lambda: "permanently removed from the cluster" in journal(lab, "edge-2", "k3s"))
    run(lab, "edge-2", "systemctl stop k3s; rm -rf /var/lib/rancher/k3s/server/db")
    assert run(lab, "edge-2", "timeout 30 systemctl start k3s").returncode == 0
    run(lab, "edge-2", "systemctl stop k3s; /usr/local/bin/k3s-uninstall.sh")


def test_leaf_certificates_have_the_set_lifetime_and_survive_restarts(lab):
    serving = certificate(lab, "edge-1", "serving-kube-apiserver")
    left = serving.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=199) < left <= datetime.timedelta(days=200)
    ca = certificate(lab, "edge-1", "server-ca")
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == datetime.timedelta(days=3650)
    run(lab, "edge-1", "systemctl restart k3s", check=True)
    assert certificate(lab, "edge-1", "serving-kube-apiserver").serial_number == serving.serial_number


def test_a_leaf_certificate_within_120_days_of_expiry_is_renewed_with_its_key_at_start(lab):
    run(lab, "edge-1", f"cd {TLS} && openssl req -x509 -key client-admin.key -out client-admin.crt -days 100 "
                       "-subj /CN=short -CA server-ca.crt -CAkey server-ca.key", check=True)
    short = certificate(lab, "edge-1", "client-admin")
    run(lab, "edge-1", "systemctl restart k3s", check=True)
    renewed = certificate(lab, "edge-1", "client-admin")
    assert renewed.serial_number != short.serial_number
    assert renewed.public_key().public_numbers() == short.public_key().public_numbers()   # the same key
    left = renewed.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    assert left > datetime.timedelta(days=199)


def test_certificate_rotate_backs_up_tls_and_the_next_start_makes_new_certificates_and_keys(lab):
    old_cert = certificate(lab, "edge-1", "client-admin")
    old_key = lab.host("edge-1").path_on_host(f"{TLS}/client-admin.key").read_bytes()
    old_ca = certificate(lab, "edge-1", "server-ca")
    run(lab, "edge-1", "systemctl stop k3s", check=True)
    done = run(lab, "edge-1", "k3s certificate rotate")
    assert done.returncode == 0, done.stderr
    backup = re.search(r"Successfully backed up certificates to (\S+), please restart k3s server or agent to "
                       r"rotate certificates", done.stderr)
    assert backup and lab.host("edge-1").path_on_host(f"{backup[1]}/client-admin.crt").exists()
    assert "Rotating certificates for admin" in done.stderr
    unknown = run(lab, "edge-1", "k3s certificate rotate --service admin,not-a-service")
    # k3s pkg/cli/cert validateCertConfig
    assert unknown.returncode == 1 and "service not-a-service is not recognized" in unknown.stderr
    run(lab, "edge-1", "systemctl start k3s", check=True)
    new_cert = certificate(lab, "edge-1", "client-admin")
    assert new_cert.serial_number != old_cert.serial_number
    assert lab.host("edge-1").path_on_host(f"{TLS}/client-admin.key").read_bytes() != old_key
    assert certificate(lab, "edge-1", "server-ca").serial_number == old_ca.serial_number
    kubeconfig = lab.host("edge-1").path_on_host("/etc/rancher/k3s/k3s.yaml").read_text()
    assert run(lab, "edge-1", "k3s kubectl get nodes").returncode == 0 and kubeconfig


def test_a_server_refuses_ca_files_newer_than_its_datastore_and_takes_the_datastores_otherwise(lab):
    """k3s pkg/cluster/bootstrap.go ReconcileBootstrapData: a differing file 3 s or more newer on disk than the
    datastore's copy stops the server; one less newer, or missing, is written from the datastore with its time."""
    host, server = lab.host("edge-3"), "/var/lib/rancher/k3s/server"
    files = [f"{server}/cred/ipsec.psk", f"{server}/tls/server-ca.crt", f"{server}/tls/server-ca.key"]
    config = {"node-ip": host.address, "token": PASSWORD}
    try:
        start(lab, "edge-3", "server", config)
        run(lab, "edge-3", f"systemctl stop k3s; cp -a {server}/db /root/db-a", check=True)
        kept = {f: (host.path_on_host(f).read_bytes(), int(host.path_on_host(f).stat().st_mtime)) for f in files}
        run(lab, "edge-3", f"rm -rf {server}", check=True)
        start(lab, "edge-3", "server", config)   # another cluster: another CA and ipsec key
        run(lab, "edge-3", f"systemctl stop k3s; rm -rf {server}/db; cp -a /root/db-a {server}/db", check=True)
        stamp = kept[files[1]][1]
        run(lab, "edge-3", f"touch -d @{stamp + 3} {' '.join(files)}", check=True)
        start(lab, "edge-3", "server", config, block=False)
        refusal = f"{', '.join(files)} newer than datastore and could cause a cluster outage. Remove the file(s) " \
                  "from disk and restart to be recreated from datastore."
        assert wait_for(lambda: refusal in journal(lab, "edge-3", "k3s"), timeout=30)
        assert run(lab, "edge-3", "systemctl is-active k3s").stdout.strip() != "active"
        assert host.path_on_host(files[1]).read_bytes() != kept[files[1]][0]   # the disk's files stay
        run(lab, "edge-3", f"systemctl stop k3s; touch -d @{stamp + 2} {' '.join(files[1:])}; rm {files[0]}",
            check=True)
        assert start(lab, "edge-3", "server", config).returncode == 0
        for path, (content, mtime) in kept.items():
            assert (host.path_on_host(path).read_bytes(), int(host.path_on_host(path).stat().st_mtime)) == \
                (content, mtime)
    finally:
        run(lab, "edge-3", "systemctl stop k3s; /usr/local/bin/k3s-uninstall.sh; rm -rf /root/db-a")


AGENT = "/var/lib/rancher/k3s/agent"
AGENT_FILES = ("client-kubelet", "serving-kubelet", "client-kube-proxy", "client-k3s-controller")


def agent_certs(lab, host="edge-3"):
    """{file: (leaf, the certificates after it, the key's bytes)} of a node's agent files."""
    found = {}
    for name in AGENT_FILES:
        chain = x509.load_pem_x509_certificates(lab.host(host).path_on_host(f"{AGENT}/{name}.crt").read_bytes())
        found[name] = (chain[0], chain[1:], lab.host(host).path_on_host(f"{AGENT}/{name}.key").read_bytes())
    return found


def test_an_agent_fetches_its_certificates_at_every_start_and_rotates_them_itself(lab):
    start(lab, "edge-3", "agent", {"server": server_url(lab), "token": PASSWORD,
                                   "node-ip": lab.host("edge-3").address})
    first = agent_certs(lab)
    ca = certificate(lab, "edge-1", "server-ca")
    for name, (leaf, rest, _) in first.items():   # the leaf, then the CA; 0600; the set lifetime
        assert [c.serial_number for c in rest] == [ca.serial_number]
        assert lab.host("edge-3").path_on_host(f"{AGENT}/{name}.key").stat().st_mode & 0o777 == 0o600
        left = leaf.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
        assert datetime.timedelta(days=199) < left <= datetime.timedelta(days=200)
    assert first["client-kubelet"][0].subject.rfc4514_string() == "CN=system:node:edge-3,O=system:nodes"
    run(lab, "edge-3", "systemctl restart k3s-agent", check=True)
    again = agent_certs(lab)
    assert all(again[n][0].serial_number != first[n][0].serial_number and again[n][2] == first[n][2]
               for n in AGENT_FILES)   # signed anew at start, for the server's same keys
    run(lab, "edge-3", "systemctl stop k3s-agent", check=True)
    done = run(lab, "edge-3", "k3s certificate rotate")
    assert done.returncode == 0 and "Agent detected, rotating agent certificates" in done.stderr
    assert "Rotating certificates for kubelet" in done.stderr and "Rotating certificates for admin" not in done.stderr
    backup = re.search(r"Successfully backed up certificates to (\S+),", done.stderr)[1]
    assert backup.startswith(f"{AGENT}/tls-")
    assert {p.name for p in lab.host("edge-3").path_on_host(backup).iterdir()} >= {f"{n}.crt" for n in AGENT_FILES}
    assert not any(lab.host("edge-3").path_on_host(f"{AGENT}/{n}.crt").exists() for n in AGENT_FILES)
    run(lab, "edge-3", "systemctl start k3s-agent", check=True)
    assert all(agent_certs(lab)[n][0].serial_number != again[n][0].serial_number for n in AGENT_FILES)
    run(lab, "edge-3", "systemctl stop k3s-agent; /usr/local/bin/k3s-agent-uninstall.sh")
