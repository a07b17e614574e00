"""Stand-ins on lab hosts: systemctl, the k3s install script, k3s server/agent/kubectl, MetalLB."""
import base64
import json
import ssl
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from lab.lifecycle.inventory import K3S_VERSION, METALLB_VERSION
from lab.releases.artifacts import build_release_tree, serve_directory, sha256

TIMINGS = {"node_ready": 0.5, "heartbeat": 1.0, "rollout": 1.0, "endpoints": 0.5,
           "webhook_refusal": 2.0}
INSTALL = ("INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION={v} INSTALL_K3S_EXEC={role} "
           "sh /usr/local/bin/k3s-install.sh")


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=3, servers=1, timings=TIMINGS)


def _put(lab, host, path, data: bytes, mode=0o644):
    target = lab.host(host).path_on_host(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)


def install(lab, host, role, config, env=""):
    """What the kit does on a host: binary + script from the bundle, config.yaml, run the script."""
    release = lab.bundle / "k3s" / K3S_VERSION
    _put(lab, host, "/usr/local/bin/k3s", (release / "k3s").read_bytes(), 0o755)
    _put(lab, host, "/usr/local/bin/k3s-install.sh", (release / "install.sh").read_bytes(), 0o755)
    _put(lab, host, "/etc/rancher/k3s/config.yaml", yaml.safe_dump(config).encode(), 0o600)
    return lab.exec(host, env + INSTALL.format(v=K3S_VERSION, role=role))


def wait_for(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def kubectl(lab, args, stdin=None, host="edge-1"):
    return lab.exec(host, f"k3s kubectl {args}", input=stdin, check=False)


def ready_nodes(lab):
    nodes = json.loads(kubectl(lab, "get nodes -o json").stdout or '{"items": []}')["items"]
    return {n["metadata"]["name"] for n in nodes
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])}


def server_and_agents(lab, agents=("edge-2", "edge-3")) -> None:
    """edge-1 a first server (node-ip its address, servicelb off), `agents` joined with its token, all Ready."""
    first = lab.host("edge-1")
    install(lab, "edge-1", "server", {"node-ip": first.address, "disable": ["servicelb"]})
    assert wait_for(lambda: kubectl(lab, "get --raw /readyz").stdout == "ok")
    token = lab.exec("edge-1", "cat /var/lib/rancher/k3s/server/token").stdout.strip()
    for agent in agents:
        install(lab, agent, "agent", {"server": f"https://{first.address}:6443", "token": token})
    assert wait_for(lambda: ready_nodes(lab) == {"edge-1", *agents})


@pytest.fixture(scope="module")
def cluster(lab):
    """edge-1 first server, edge-2 agent; returns the cluster token."""
    first = lab.host("edge-1")
    install(lab, "edge-1", "server", {"node-ip": first.address, "disable": ["servicelb"],
                                      "node-label": ["zone=line-1"]})
    assert wait_for(lambda: kubectl(lab, "get --raw /readyz").stdout == "ok")
    token = lab.exec("edge-1", "cat /var/lib/rancher/k3s/server/token").stdout.strip()
    install(lab, "edge-2", "agent", {"server": f"https://{first.address}:6443", "token": token,
                                     "node-taint": ["dedicated=ml:NoSchedule"]})
    assert wait_for(lambda: ready_nodes(lab) == {"edge-1", "edge-2"})
    return token


def test_install_writes_real_paths_and_token_is_private(lab, cluster):
    listing = lab.exec("edge-1", "ls /usr/local/bin /etc/systemd/system").stdout.split()
    for name in ("k3s", "crictl", "ctr", "k3s-killall.sh", "k3s-uninstall.sh",
                 "k3s.service", "k3s.service.env"):
        assert name in listing
    assert "kubectl" not in listing   # like upstream: no link where the command exists on PATH (/usr/bin/kubectl)
    assert "k3s-agent-uninstall.sh" in lab.exec("edge-2", "ls /usr/local/bin").stdout
    mode = lab.exec("edge-1", "stat -c %a /var/lib/rancher/k3s/server/token").stdout.strip()
    assert mode == "600" and cluster.startswith("K10")
    assert "ExecStart=/usr/local/bin/k3s" in lab.exec("edge-1", "cat /etc/systemd/system/k3s.service").stdout
    assert lab.exec("edge-1", "systemctl is-active k3s", check=False).returncode == 0
    assert lab.exec("edge-3", "systemctl is-active k3s", check=False).returncode == 3


def test_nodes_report_labels_taints_and_version(lab, cluster):
    nodes = {n["metadata"]["name"]: n for n in
             json.loads(kubectl(lab, "get nodes -o json").stdout)["items"]}
    assert nodes["edge-1"]["metadata"]["labels"]["zone"] == "line-1"
    assert "node-role.kubernetes.io/control-plane" in nodes["edge-1"]["metadata"]["labels"]
    assert nodes["edge-2"]["spec"]["taints"] == [
        {"key": "dedicated", "value": "ml", "effect": "NoSchedule"}]
    assert nodes["edge-2"]["status"]["nodeInfo"]["kubeletVersion"] == K3S_VERSION


def test_install_script_restarts_only_on_change(lab, cluster):
    starts = lab.host("edge-1").path_on_host("/var/log/lab-units/k3s.starts")
    before = len(starts.read_text().splitlines())
    rerun = lab.exec("edge-1", INSTALL.format(v=K3S_VERSION, role="server"))
    assert "No change detected so skipping service start" in rerun.stdout
    assert len(starts.read_text().splitlines()) == before
    # a changed unit env file (K3S_* variables) restarts; a binary replaced before the script
    # runs does not (the real script hashes at its start): the kit restarts for that itself
    lab.exec("edge-1", "printf '\\n' >> /usr/local/bin/k3s")
    lab.exec("edge-1", INSTALL.format(v=K3S_VERSION, role="server"))
    assert len(starts.read_text().splitlines()) == before
    lab.exec("edge-1", "K3S_LAB_MARK=1 " + INSTALL.format(v=K3S_VERSION, role="server"))
    assert len(starts.read_text().splitlines()) == before + 1
    assert wait_for(lambda: kubectl(lab, "get --raw /readyz").stdout == "ok")
    assert wait_for(lambda: ready_nodes(lab) == {"edge-1", "edge-2"})   # state survived the restart


def test_join_with_wrong_token_is_refused(lab, cluster):
    first = lab.host("edge-1").address
    install(lab, "edge-3", "agent", {"server": f"https://{first}:6443", "token": "not-the-token"},
            env="INSTALL_K3S_SKIP_START=true ")
    assert lab.exec("edge-3", "systemctl start --no-block k3s-agent").returncode == 0
    assert wait_for(lambda: "401 Unauthorized" in lab.exec("edge-3", "journalctl -u k3s-agent").stdout)
    assert lab.exec("edge-3", "systemctl is-active k3s-agent", check=False).stdout.strip() == "activating"
    assert "edge-3" not in kubectl(lab, "get nodes").stdout
    lab.exec("edge-3", "/usr/local/bin/k3s-agent-uninstall.sh")
    left = lab.exec("edge-3", "ls -A /usr/local/bin /etc/rancher /var/lib/rancher "
                              "/etc/systemd/system").stdout.split()
    assert not {"k3s", "k3s-agent.service", "crictl"} & set(left)
    assert lab.exec("edge-3", "cat /etc/rancher/node/password").stdout.strip()  # kept, as upstream does


def test_kubeconfig_works_over_https_from_the_root_namespace(lab, cluster):
    config = yaml.safe_load(lab.exec("edge-1", "cat /etc/rancher/k3s/k3s.yaml").stdout)
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert [c["name"] for c in config["contexts"]] == ["default"]
    user = config["users"][0]["user"]
    tmp = lab.out_dir / "client"
    tmp.mkdir(mode=0o700, exist_ok=True)
    (tmp / "c.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
    (tmp / "c.key").write_bytes(base64.b64decode(user["client-key-data"]))
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    context = ssl.create_default_context(cadata=ca)       # hostname (IP SAN) checked too
    context.load_cert_chain(tmp / "c.crt", tmp / "c.key")
    url = f"https://{lab.host('edge-1').address}:6443/api/v1/nodes"
    with urllib.request.urlopen(url, context=context, timeout=5) as reply:
        names = {n["metadata"]["name"] for n in json.loads(reply.read())["items"]}
    assert names >= {"edge-1", "edge-2"}
    anonymous = ssl.create_default_context(cadata=ca)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, context=anonymous, timeout=5)
    assert refused.value.code == 401


POOL = """apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: lab, namespace: metallb-system}}
spec: {{addresses: ["{range}"]}}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: lab, namespace: metallb-system}}
"""
SERVICE = """apiVersion: v1
kind: Service
metadata: {name: smoke, namespace: default}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"""


def test_metallb_webhook_refuses_pools_then_services_get_pool_addresses(lab, cluster):
    manifest = (lab.bundle / "metallb" / METALLB_VERSION / "metallb-native.yaml").read_text()
    early = kubectl(lab, "apply -f -", POOL.format(range=lab.metallb_range))
    assert early.returncode != 0 and "ensure CRDs are installed first" in early.stderr
    for types in ("ipaddresspools.metallb.io", "nodes,ipaddresspools.metallb.io"):  # no CRD: nothing printed
        unknown = kubectl(lab, f"get {types} -n metallb-system -o json")
        assert (unknown.returncode, unknown.stdout) == (1, "")
        assert 'the server doesn\'t have a resource type "ipaddresspools.metallb.io"' in unknown.stderr
    assert "deployment.apps/controller created" in kubectl(lab, "apply -f -", manifest).stdout
    rollout = kubectl(lab, "-n metallb-system rollout status deployment/controller --timeout=30s")
    assert rollout.returncode == 0
    assert kubectl(lab, "-n metallb-system rollout status daemonset/speaker --timeout=30s").returncode == 0
    endpoints = lambda: json.loads(kubectl(
        lab, "-n metallb-system get endpoints metallb-webhook-service -o json").stdout)["subsets"]
    assert wait_for(lambda: bool(endpoints()))
    refused = kubectl(lab, "apply -f -", POOL.format(range=lab.metallb_range))
    assert refused.returncode != 0
    assert 'failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io"' in refused.stderr
    assert "connect: connection refused" in refused.stderr
    assert wait_for(lambda: kubectl(lab, "apply -f -", POOL.format(range=lab.metallb_range)).returncode == 0)
    pools = json.loads(kubectl(lab, "get ipaddresspools.metallb.io -n metallb-system -o json").stdout)
    assert [p["metadata"]["name"] for p in pools["items"]] == ["lab"]
    both = json.loads(kubectl(lab, "get nodes,ipaddresspools.metallb.io -n metallb-system -o json").stdout)
    assert both["kind"] == "List"  # one List of every type's items, each with its kind
    nodes = json.loads(kubectl(lab, "get nodes -o json").stdout)["items"]
    assert [i["kind"] for i in both["items"]] == ["Node"] * len(nodes) + ["IPAddressPool"]
    assert kubectl(lab, "apply -f -", SERVICE).returncode == 0
    svc = json.loads(kubectl(lab, "get svc smoke -n default -o json").stdout)
    assert svc["status"]["loadBalancer"]["ingress"][0]["ip"] == f"10.213.{lab.number}.200"
    assert kubectl(lab, "apply -f -", SERVICE).stdout == "service/smoke unchanged\n"   # server-set fields kept
    again = json.loads(kubectl(lab, "get svc smoke -n default -o json").stdout)
    assert again["spec"]["clusterIP"] == svc["spec"]["clusterIP"] and again["status"] == svc["status"]
    assert kubectl(lab, "delete svc smoke -n default").returncode == 0
    missing = kubectl(lab, "get svc smoke -n default -o json")
    assert missing.returncode == 1 and "NotFound" in missing.stderr


def test_speakers_run_only_where_the_real_manifest_tolerates_the_taints(lab, cluster):
    """The lab applies the real metallb-native.yaml; its speaker tolerates only the control-plane/master
    NoSchedule taints, so edge-2 (dedicated=ml:NoSchedule) gets no speaker."""
    manifest = (lab.bundle / "metallb" / METALLB_VERSION / "metallb-native.yaml").read_text()
    upstream = Path(__file__).resolve().parents[2].parent / "shared/upstream"
    assert manifest == (upstream / f"metallb-{METALLB_VERSION[1:]}/metallb-native.yaml").read_text()
    kubectl(lab, "apply -f -", manifest)
    ds = json.loads(kubectl(lab, "get daemonset speaker -n metallb-system -o json").stdout)
    assert ds["status"]["desiredNumberScheduled"] == ds["status"]["currentNumberScheduled"] == 1
    pods = json.loads(kubectl(lab, "get pods -n metallb-system -o json").stdout)["items"]
    speakers = {p["spec"]["nodeName"] for p in pods if p["metadata"]["labels"].get("component") == "speaker"}
    assert speakers == {"edge-1"}
    everywhere = json.loads(kubectl(lab, "get pods -A -o json").stdout)["items"]
    assert {p["metadata"]["name"] for p in everywhere} == {p["metadata"]["name"] for p in pods}


ANNOTATED = """apiVersion: v1
kind: ConfigMap
metadata: {{name: applied, namespace: default, annotations: {{kit/sha: "{sha}"}}}}
data: {{key: "{value}"}}
"""


def test_apply_compares_the_whole_configuration_like_kubectl(lab, cluster):
    assert kubectl(lab, "apply -f -", ANNOTATED.format(sha="a", value="1")).stdout == "configmap/applied created\n"
    assert kubectl(lab, "apply -f -", ANNOTATED.format(sha="a", value="1")).stdout == "configmap/applied unchanged\n"
    assert kubectl(lab, "apply -f -", ANNOTATED.format(sha="b", value="1")).stdout == "configmap/applied configured\n"
    assert kubectl(lab, "apply -f -", ANNOTATED.format(sha="b", value="2")).stdout == "configmap/applied configured\n"
    got = json.loads(kubectl(lab, "get configmap applied -n default -o json").stdout)
    assert got["metadata"]["annotations"]["kit/sha"] == "b" and got["data"] == {"key": "2"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]
    kubectl(lab, "delete configmap applied -n default")


def test_drain_and_delete_node(lab, cluster):
    drained = kubectl(lab, "drain edge-2 --ignore-daemonsets --delete-emptydir-data --force --timeout=30s")
    assert drained.returncode == 0 and "node/edge-2 drained" in drained.stdout
    lab.exec("edge-2", "systemctl stop k3s-agent")  # a running agent re-registers its node, as real k3s does
    assert kubectl(lab, "delete node edge-2").returncode == 0
    assert "edge-2" not in kubectl(lab, "get nodes").stdout
    assert kubectl(lab, "delete node edge-2").returncode == 1


def test_secrets_never_in_process_argv(lab, cluster):
    password = cluster.split(":")[-1]
    for host in ("edge-1", "edge-2"):
        assert not any(password in " ".join(argv) for argv in lab.process_argvs(host))


def test_install_script_downloads_and_verifies_from_a_mirror(lab, tmp_path):
    shas = build_release_tree(tmp_path, K3S_VERSION, METALLB_VERSION)
    script = (tmp_path / "k3s-io/k3s" / K3S_VERSION / "install.sh").read_bytes()
    assert shas["install.sh"] == sha256(script)
    with serve_directory(tmp_path, host=lab.gateway) as url:
        _put(lab, "edge-3", "/tmp/install.sh", script, 0o755)
        env = (f"GITHUB_URL={url}/k3s-io/k3s/releases INSTALL_K3S_VERSION={K3S_VERSION} "
               "INSTALL_K3S_SKIP_START=true INSTALL_K3S_EXEC=agent sh /tmp/install.sh")
        lab.exec("edge-3", env)
        assert lab.exec("edge-3", "/usr/local/bin/k3s --version").stdout.startswith(
            f"k3s version {K3S_VERSION}")
        sums = tmp_path / "k3s-io/k3s/releases/download" / K3S_VERSION / "sha256sum-amd64.txt"
        sums.write_text("0" * 64 + "  k3s\n")
        tampered = lab.exec("edge-3", env, check=False)
        assert tampered.returncode != 0 and "does not match" in tampered.stderr
