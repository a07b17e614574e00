"""The stand-in k3s where an upgrade relies on it: cordon/uncordon (spec.unschedulable; new pods kept off, none
moved), kubectl drain as kubectl does it (evictions through PodDisruptionBudgets, retried until --timeout, the node
left cordoned; DaemonSet and emptyDir pods need their flags), and a node reporting the version of the binary that
runs, not the one on disk."""
import json

import pytest
import yaml

from lab.lifecycle.inventory import K3S_VERSION
from lab.releases.artifacts import k3s_binary
from tests.lab.test_standins import _put, install, kubectl, ready_nodes, wait_for

TIMINGS = {"node_ready": 0.5, "heartbeat": 1.0, "retry": 0.3}
NEXT_PATCH = "v1.37.3+k3s1"


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    """edge-1 server, edge-2 and edge-3 agents."""
    lab = module_lab_factory(hosts=3, servers=1, timings=TIMINGS)
    first = lab.host("edge-1")
    install(lab, "edge-1", "server", {"node-ip": first.address})
    assert wait_for(lambda: kubectl(lab, "get --raw /readyz").stdout == "ok")
    token = lab.exec("edge-1", "cat /var/lib/rancher/k3s/server/token").stdout.strip()
    for agent in ("edge-2", "edge-3"):
        install(lab, agent, "agent", {"server": f"https://{first.address}:6443", "token": token})
    assert wait_for(lambda: ready_nodes(lab) == {"edge-1", "edge-2", "edge-3"})
    return lab


def apply(lab, *docs):
    done = kubectl(lab, "apply -f -", stdin=yaml.safe_dump_all(docs))
    assert done.returncode == 0, done.stderr


def deployment(name, replicas, node=None, volumes=None):
    spec = {"containers": [{"name": "app", "image": "registry.lab/app:1"}]}
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def budget(name, min_available):
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": "default"},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": name}}}}


def pods_of(lab, app):
    items = json.loads(kubectl(lab, "get pods -n default -o json").stdout)["items"]
    return [p for p in items if p["metadata"].get("labels", {}).get("app") == app]


def node(lab, name):
    return json.loads(kubectl(lab, f"get node {name} -o json").stdout)


@pytest.fixture(autouse=True)
def clean(lab):
    yield
    for kind in ("deployment", "daemonset", "pdb"):
        names = kubectl(lab, f"get {kind} -n default -o name").stdout.split()
        for name in names:
            kubectl(lab, f"delete {kind} -n default {name.split('/', 1)[1]}")
    for name in ("edge-1", "edge-2", "edge-3"):
        kubectl(lab, f"uncordon {name}")


def test_cordon_keeps_new_pods_off_the_node_and_moves_none(lab):
    apply(lab, deployment("web", 3))
    before = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods_of(lab, "web")}
    assert sorted(before.values()) == ["edge-1", "edge-2", "edge-3"]  # spread, one each
    assert kubectl(lab, "cordon edge-2").stdout == "node/edge-2 cordoned\n"
    assert kubectl(lab, "cordon edge-2").stdout == "node/edge-2 already cordoned\n"
    cordoned = node(lab, "edge-2")
    assert cordoned["spec"]["unschedulable"] is True
    assert {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"} in cordoned["spec"]["taints"]
    apply(lab, deployment("web", 6))
    after = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods_of(lab, "web")}
    assert {n: after[n] for n in before} == before  # cordoning moves nothing
    assert "edge-2" not in [after[n] for n in after if n not in before]
    assert kubectl(lab, "uncordon edge-2").stdout == "node/edge-2 uncordoned\n"
    assert "unschedulable" not in node(lab, "edge-2")["spec"]
    assert kubectl(lab, "uncordon edge-9").returncode == 1


def test_drain_evicts_within_the_budget_and_the_deployment_starts_them_elsewhere(lab):
    apply(lab, deployment("web", 3), budget("web", 2))
    on_edge_2 = [p["metadata"]["name"] for p in pods_of(lab, "web") if p["spec"]["nodeName"] == "edge-2"]
    drained = kubectl(lab, "drain edge-2 --ignore-daemonsets --delete-emptydir-data --timeout=30s")
    assert drained.returncode == 0, drained.stderr
    assert f"evicting pod default/{on_edge_2[0]}" in drained.stdout and drained.stdout.endswith("node/edge-2 drained\n")
    placed = [p["spec"]["nodeName"] for p in pods_of(lab, "web")]
    assert len(placed) == 3 and "edge-2" not in placed
    assert node(lab, "edge-2")["spec"]["unschedulable"] is True


def test_a_budget_that_allows_no_disruption_blocks_the_drain_until_its_timeout(lab):
    apply(lab, deployment("db", 1, node="edge-3"), budget("db", 1))
    pdb = json.loads(kubectl(lab, "get pdb db -n default -o json").stdout)
    assert pdb["status"]["disruptionsAllowed"] == 0 and pdb["status"]["currentHealthy"] == 1
    drained = kubectl(lab, "drain edge-3 --ignore-daemonsets --delete-emptydir-data --timeout=2s")
    pod = pods_of(lab, "db")[0]["metadata"]["name"]
    assert drained.returncode == 1
    assert (f'error when evicting pods/"{pod}" -n "default" (will retry after 5s): Cannot evict pod as it would '
            "violate the pod's disruption budget.") in drained.stderr
    assert drained.stderr.endswith(f'error: error when evicting pods/"{pod}" -n "default": global timeout reached: '
                                   "2s\n")
    assert [p["spec"]["nodeName"] for p in pods_of(lab, "db")] == ["edge-3"]  # still there
    assert node(lab, "edge-3")["spec"]["unschedulable"] is True  # kubectl does not uncordon


def test_daemonset_and_emptydir_pods_need_their_flags(lab):
    daemon = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agentd", "namespace": "default"},
              "spec": {"selector": {"matchLabels": {"app": "agentd"}},
                       "template": {"metadata": {"labels": {"app": "agentd"}},
                                    "spec": {"containers": [{"name": "d", "image": "registry.lab/d:1"}]}}}}
    apply(lab, daemon, deployment("cache", 1, node="edge-2", volumes=[{"name": "tmp", "emptyDir": {}}]))
    refused = kubectl(lab, "drain edge-2 --timeout=10s")
    assert refused.returncode == 1
    assert "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/agentd-" in refused.stderr
    assert "cannot delete Pods with local storage (use --delete-emptydir-data to override): default/cache-" \
        in refused.stderr
    assert [p["spec"]["nodeName"] for p in pods_of(lab, "cache")] == ["edge-2"]
    drained = kubectl(lab, "drain edge-2 --ignore-daemonsets --delete-emptydir-data --timeout=10s")
    assert drained.returncode == 0 and "Warning: ignoring DaemonSet-managed Pods: default/agentd-" in drained.stderr
    assert "edge-2" in [p["spec"]["nodeName"] for p in pods_of(lab, "agentd")]  # daemon pods stay
    assert [p["spec"]["nodeName"] for p in pods_of(lab, "cache")] == [""]  # Pending: its only node is cordoned


def test_a_node_reports_the_version_of_the_binary_that_runs(lab):
    kubelet = lambda: node(lab, "edge-3")["status"]["nodeInfo"]["kubeletVersion"]
    assert kubelet() == K3S_VERSION
    _put(lab, "edge-3", "/usr/local/bin/k3s", k3s_binary(NEXT_PATCH, TIMINGS), 0o755)
    assert lab.exec("edge-3", "k3s --version").stdout.startswith(f"k3s version {NEXT_PATCH}")
    assert kubelet() == K3S_VERSION  # on disk only: the running agent is the old one
    lab.exec("edge-3", "systemctl restart k3s-agent")
    assert wait_for(lambda: kubelet() == NEXT_PATCH)
    assert wait_for(lambda: "edge-3" in ready_nodes(lab))
