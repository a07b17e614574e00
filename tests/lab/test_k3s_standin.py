"""The stand-in k3s behaves like k3s where the kit relies on it: the agent retries forever on a bad token or an
unreachable server (never exits, never ready), the separate agent token, a first server refusing another cluster's
CA hash, node passwords, config keys per command, the host's architecture, pinned airgap images."""
import io
import json
import tarfile

import pytest
import yaml

from lab.lifecycle.inventory import K3S_VERSION, METALLB_VERSION
from lab.releases.images import layout_archive
from tests.lab.test_standins import _put, kubectl, ready_nodes, wait_for

TIMINGS = {"node_ready": 0.3, "heartbeat": 1.0, "retry": 0.3}
AGENT_PASSWORD = "lab-agent-password"
IMAGES = "/var/lib/rancher/k3s/agent/images"


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    lab = module_lab_factory(hosts=4, servers=1, timings=TIMINGS)
    start(lab, "edge-1", "server", {"node-ip": lab.host("edge-1").address, "agent-token": AGENT_PASSWORD,
                                    "not-a-k3s-flag": True})
    assert wait_for(lambda: ready_nodes(lab) == {"edge-1"})
    return lab


def start(lab, host, role, config, binary="k3s", block=True):
    """Install like the kit: binary and config, install.sh without starting, then systemctl start."""
    release = lab.bundle / "k3s" / K3S_VERSION
    unit = "k3s" if role == "server" else "k3s-agent"
    lab.exec(host, f"systemctl stop {unit}; rm -f /var/log/lab-units/{unit}.*", check=False)
    _put(lab, host, "/usr/local/bin/k3s", (release / binary).read_bytes(), 0o755)
    _put(lab, host, "/usr/local/bin/k3s-install.sh", (release / "install.sh").read_bytes(), 0o755)
    _put(lab, host, "/etc/rancher/k3s/config.yaml", yaml.safe_dump(config).encode(), 0o600)
    lab.exec(host, f"INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_SKIP_START=true INSTALL_K3S_EXEC={role} "
                   "sh /usr/local/bin/k3s-install.sh")
    return lab.exec(host, f"systemctl start {'' if block else '--no-block '}{unit}", check=False)


def server_url(lab):
    return f"https://{lab.host('edge-1').address}:6443"


def journal(lab, host, unit="k3s-agent"):
    return lab.exec(host, f"journalctl -u {unit} -o cat --no-pager").stdout


def starts(lab, host, unit="k3s-agent"):
    return len(lab.host(host).path_on_host(f"/var/log/lab-units/{unit}.starts").read_text().splitlines())


def never_exits(lab, host, message, count=3):
    """The agent logs `message` again and again from one process that stays up and never becomes active."""
    assert wait_for(lambda: journal(lab, host).count(message) >= count, timeout=30)
    assert starts(lab, host) == 1
    assert lab.exec(host, "systemctl is-active k3s-agent", check=False).stdout.strip() == "activating"


def test_agent_with_a_wrong_token_retries_forever_and_a_start_never_returns(lab):
    assert start(lab, "edge-2", "agent", {"server": server_url(lab), "token": "wrong"}, block=False).returncode == 0
    never_exits(lab, "edge-2", "Waiting to retrieve agent configuration; server is not ready: failed to retrieve "
                               f"configuration from server: {server_url(lab)}/v1-k3s/config: 401 Unauthorized")
    blocked = lab.exec("edge-2", "timeout 3 systemctl start k3s-agent", check=False)
    assert blocked.returncode == 124       # Type=notify + TimeoutStartSec=0: the start job waits forever


def test_agent_with_an_unreachable_server_retries_forever(lab):
    nowhere = f"https://{lab.host('edge-4').address}:6443"
    start(lab, "edge-2", "agent", {"server": nowhere, "token": "whatever"}, block=False)
    never_exits(lab, "edge-2", f"Failed to validate connection to cluster at {nowhere}: failed to get CA certs: "
                               f'Get \\"{nowhere}/cacerts\\": dial tcp {nowhere[8:]}: connect: connection refused')  # logrus escapes "


def test_agent_with_another_clusters_ca_hash_retries_forever(lab):
    ca_hash = lab.exec("edge-1", "sha256sum /var/lib/rancher/k3s/server/tls/server-ca.crt").stdout.split()[0]
    start(lab, "edge-2", "agent", {"server": server_url(lab), "token": f"K10{'0' * 64}::node:{AGENT_PASSWORD}"},
          block=False)
    never_exits(lab, "edge-2", f"Failed to validate connection to cluster at {server_url(lab)}: token CA hash does "
                               f"not match the Cluster CA certificate hash: {'0' * 64} != {ca_hash}")


def test_the_agent_token_is_kept_apart_and_joins_agents(lab):
    ca_hash = lab.exec("edge-1", "sha256sum /var/lib/rancher/k3s/server/tls/server-ca.crt").stdout.split()[0]
    agent_token = lab.exec("edge-1", "cat /var/lib/rancher/k3s/server/agent-token").stdout.strip()
    server_token = lab.exec("edge-1", "cat /var/lib/rancher/k3s/server/token").stdout.strip()
    assert agent_token == f"K10{ca_hash}::node:{AGENT_PASSWORD}" and server_token.startswith(f"K10{ca_hash}::server:")
    assert lab.exec("edge-1", "stat -c %a /var/lib/rancher/k3s/server/agent-token").stdout.strip() == "600"
    assert start(lab, "edge-2", "agent", {"server": server_url(lab), "token": agent_token}).returncode == 0
    assert lab.exec("edge-2", "systemctl is-active k3s-agent").stdout.strip() == "active"
    assert wait_for(lambda: ready_nodes(lab) == {"edge-1", "edge-2"})
    secrets = (AGENT_PASSWORD, server_token.rsplit(":", 1)[1])
    for host, unit in (("edge-1", "k3s"), ("edge-2", "k3s-agent")):
        assert not [s for s in secrets if s in journal(lab, host, unit)]
        assert not [a for a in lab.process_argvs(host) if any(s in " ".join(a) for s in secrets)]


def test_the_agent_token_cannot_join_a_server(lab):
    agent_token = lab.exec("edge-1", "cat /var/lib/rancher/k3s/server/agent-token").stdout.strip()
    failed = start(lab, "edge-3", "server", {"server": server_url(lab), "token": agent_token})
    assert failed.returncode == 1 and "Job for k3s.service failed" in failed.stderr
    assert (f'level=fatal msg="starting kubernetes: preparing server: failed to bootstrap cluster data: '
            f'{server_url(lab)}/v1-k3s/server-bootstrap: 401 Unauthorized"') in journal(lab, "edge-3", "k3s")
    assert "edge-3" not in {n for n in ready_nodes(lab)}
    lab.exec("edge-3", "systemctl stop k3s")


def test_a_first_server_refuses_a_full_token_with_another_clusters_ca_hash(lab):
    old_cluster = lab.exec("edge-1", "cat /var/lib/rancher/k3s/server/token").stdout.strip()
    lab.exec("edge-4", "rm -rf /var/lib/rancher/k3s")
    failed = start(lab, "edge-4", "server", {"token": old_cluster})
    assert failed.returncode == 1
    assert "token CA hash does not match the Cluster CA certificate hash" in journal(lab, "edge-4", "k3s")
    lab.exec("edge-4", "systemctl stop k3s; rm -rf /var/lib/rancher/k3s")
    seeded = start(lab, "edge-4", "server", {"token": old_cluster.rsplit(":", 1)[1]})   # the short form seeds
    assert seeded.returncode == 0
    new_token = lab.exec("edge-4", "cat /var/lib/rancher/k3s/server/token").stdout.strip()
    assert new_token.endswith(old_cluster.rsplit(":", 1)[1]) and new_token != old_cluster   # new CA hash
    lab.exec("edge-4", "systemctl stop k3s")


def test_a_reimaged_host_is_rejected_until_its_node_password_secret_is_deleted(lab):
    assert wait_for(lambda: "edge-2" in ready_nodes(lab))
    secrets = json.loads(kubectl(lab, "get secrets -n kube-system -o json").stdout)["items"]
    assert "edge-2.node-password.k3s" in {s["metadata"]["name"] for s in secrets}
    assert lab.exec("edge-2", "stat -c %a /etc/rancher/node/password").stdout.strip() == "600"
    agent_token = lab.exec("edge-1", "cat /var/lib/rancher/k3s/server/agent-token").stdout.strip()
    lab.exec("edge-2", "systemctl stop k3s-agent; rm -rf /etc/rancher/* /var/lib/rancher/*")   # re-imaged
    start(lab, "edge-2", "agent", {"server": server_url(lab), "token": agent_token}, block=False)
    never_exits(lab, "edge-2", "Waiting to retrieve agent configuration; server is not ready: Node password "
                               "rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not "
                               "match server node-passwd entry, try enabling a unique node name with the "
                               "--with-node-id flag", count=2)
    deleted = kubectl(lab, "delete secret -n kube-system edge-2.node-password.k3s")
    assert deleted.returncode == 0
    assert wait_for(lambda: lab.exec("edge-2", "systemctl is-active k3s-agent", check=False).returncode == 0)
    again = kubectl(lab, "delete secret -n kube-system edge-2.node-password.k3s --ignore-not-found")
    assert again.returncode == 0    # it was created again for the new password
    missing = kubectl(lab, "delete secret -n kube-system edge-2.node-password.k3s")
    assert missing.returncode == 1 and 'secrets "edge-2.node-password.k3s" not found' in missing.stderr


def test_deleting_a_node_deletes_its_node_password_secret(lab):
    lab.exec("edge-2", "systemctl stop k3s-agent")
    assert kubectl(lab, "delete node edge-2").returncode == 0
    secrets = json.loads(kubectl(lab, "get secrets -n kube-system -o json").stdout)["items"]
    assert "edge-2.node-password.k3s" not in {s["metadata"]["name"] for s in secrets}


def test_the_agent_stops_on_an_unknown_or_server_only_config_key(lab):
    for key in ("not-a-k3s-flag", "cluster-init"):
        failed = start(lab, "edge-3", "agent", {"server": server_url(lab), "token": "x", key: True}, block=False)
        assert failed.returncode == 0
        line = f'level=fatal msg="Error: flag provided but not defined: -{key}"'
        assert wait_for(lambda: journal(lab, "edge-3").count(line) >= 2)     # exits; Restart=always starts it again
        assert starts(lab, "edge-3") >= 2
        lab.exec("edge-3", "systemctl stop k3s-agent")
    assert ('level=warning msg="Unknown flag --not-a-k3s-flag found in config.yaml, skipping\\n"'
            in journal(lab, "edge-1", "k3s"))          # the server drops it and runs
    assert lab.exec("edge-1", "systemctl is-active k3s").returncode == 0


@pytest.mark.parametrize("machine, binary, arch", [("aarch64", "k3s-arm64", "arm64"), ("armv7l", "k3s-armhf", "arm")])
def test_nodes_report_the_hosts_architecture(lab, machine, binary, arch):
    lab.set_arch("edge-3", machine, long_bit=32)
    assert lab.exec("edge-3", "uname -m").stdout.strip() == machine
    assert lab.exec("edge-3", "getconf LONG_BIT").stdout.strip() == "32"
    assert lab.exec("edge-3", "dpkg --print-architecture").stdout.strip() == "armhf"   # 32-bit userland
    agent_token = lab.exec("edge-1", "cat /var/lib/rancher/k3s/server/agent-token").stdout.strip()
    lab.exec("edge-3", "rm -rf /etc/rancher/node")
    kubectl(lab, "delete node edge-3 --ignore-not-found")
    assert start(lab, "edge-3", "agent", {"server": server_url(lab), "token": agent_token}, binary=binary).returncode == 0
    node = json.loads(kubectl(lab, "get node edge-3 -o json").stdout)
    assert node["metadata"]["labels"]["kubernetes.io/arch"] == arch
    assert node["status"]["nodeInfo"]["architecture"] == arch
    lab.exec("edge-3", "systemctl stop k3s-agent")


def _images(lab, host):
    return {i["repoTags"][0]: i["pinned"] for i in
            json.loads(lab.exec(host, "k3s crictl images -o json").stdout)["images"]}


def _padded(archive: bytes) -> bytes:
    """The same OCI layout with one more file, so the archive's size differs."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(archive)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        pad = tarfile.TarInfo("lab-padding")
        pad.size = 50000
        dst.addfile(pad, io.BytesIO(b"\0" * pad.size))
    return out.getvalue()


def test_airgap_archives_are_imported_pinned_at_start_and_when_replaced(lab):
    archive = lab.bundle / "metallb" / METALLB_VERSION / "metallb-images-amd64.tar"
    _put(lab, "edge-4", f"{IMAGES}/metallb-images-amd64.tar", archive.read_bytes())
    lab.exec("edge-4", "rm -rf /var/lib/rancher/k3s/server")
    assert start(lab, "edge-4", "server", {}).returncode == 0
    names = [f"quay.io/metallb/controller:{METALLB_VERSION}", f"quay.io/metallb/speaker:{METALLB_VERSION}"]
    assert _images(lab, "edge-4") == dict.fromkeys(names, True)
    listing = lab.exec("edge-4", "k3s ctr -n k8s.io images ls").stdout.splitlines()
    assert listing[0].split("\t") == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    assert all(line.split("\t")[-1] == "io.cattle.k3s.pinned=pinned,io.cri-containerd.pinned=pinned"
               for line in listing[1:])
    # replaced on the running node with an archive of another size: the watcher imports it, pinned, no restart
    _put(lab, "edge-4", f"{IMAGES}/metallb-images-amd64.tar", _padded(layout_archive("v9.9.9", "amd64")))
    assert wait_for(lambda: "quay.io/metallb/speaker:v9.9.9" in _images(lab, "edge-4"), timeout=30)
    assert _images(lab, "edge-4")["quay.io/metallb/speaker:v9.9.9"] is True and starts(lab, "edge-4", "k3s") == 1
    # same size and newer: upstream's watcher does not import it again (the size must change); a new archive
    # sorted after it is imported, so the watcher has looked at the replaced one by then
    _put(lab, "edge-4", f"{IMAGES}/metallb-images-amd64.tar", _padded(layout_archive("v9.9.8", "amd64")))
    _put(lab, "edge-4", f"{IMAGES}/z-marker.tar", layout_archive("v5.5.5", "amd64"))
    assert wait_for(lambda: "quay.io/metallb/speaker:v5.5.5" in _images(lab, "edge-4"), timeout=30)
    assert "quay.io/metallb/speaker:v9.9.8" not in _images(lab, "edge-4")
    # at the next start the directory is imported again (the v9.9.8 archive now); images whose archive is gone
    # are no longer pinned
    lab.exec("edge-4", f"rm {IMAGES}/z-marker.tar")
    assert lab.exec("edge-4", "systemctl restart k3s").returncode == 0
    images = _images(lab, "edge-4")
    assert images["quay.io/metallb/speaker:v9.9.8"] is True
    assert images["quay.io/metallb/speaker:v5.5.5"] is False and images["quay.io/metallb/speaker:v9.9.9"] is False


def test_images_imported_by_hand_are_not_pinned_until_labelled(lab):
    _put(lab, "edge-4", "/root/by-hand.tar", layout_archive("v7.7.7", "amd64"))
    refused = lab.exec("edge-4", "k3s ctr -n k8s.io images import --label io.cri-containerd.pinned=pinned "
                                 "/root/by-hand.tar", check=False)
    assert refused.returncode == 1 and "flag provided but not defined: -label" in refused.stderr
    lab.exec("edge-4", "k3s ctr -n k8s.io images import /root/by-hand.tar")
    assert _images(lab, "edge-4")["quay.io/metallb/controller:v7.7.7"] is False
    lab.exec("edge-4", "k3s ctr -n k8s.io images label quay.io/metallb/controller:v7.7.7 "
                       "io.cri-containerd.pinned=pinned")
    assert _images(lab, "edge-4")["quay.io/metallb/controller:v7.7.7"] is True
    lab.exec("edge-4", "systemctl stop k3s")


def test_the_agent_takes_server_and_token_from_the_units_env_file(lab):
    """`K3S_URL=... K3S_TOKEN=... sh install.sh`: install.sh keeps K3S_* in the unit's env file, k3s reads them."""
    agent_token = lab.exec("edge-1", "cat /var/lib/rancher/k3s/server/agent-token").stdout.strip()
    lab.exec("edge-2", "systemctl stop k3s-agent; rm -f /var/log/lab-units/k3s-agent.*")
    _put(lab, "edge-2", "/etc/rancher/k3s/config.yaml", b"{}\n", 0o600)
    lab.exec("edge-2", "INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_SKIP_START=true "
                       f"K3S_URL={server_url(lab)} K3S_TOKEN={agent_token} sh /usr/local/bin/k3s-install.sh")
    assert lab.exec("edge-2", "systemctl start k3s-agent").returncode == 0
    assert wait_for(lambda: "edge-2" in ready_nodes(lab))
    lab.exec("edge-2", "systemctl stop k3s-agent")
