"""What an upgrade relies on from a cluster's cordon and drain, as scenarios run unchanged against the lab's k3s
stand-in (tests/lab/test_k3s_drain_standin.py) and a real control plane with kwok's nodes
(tests/realapi/test_drain_real.py), so the stand-in is calibrated by the real kubectl, API server, scheduler and
controllers: cordon (spec.unschedulable; new pods kept off, none moved), kubectl drain (evictions through
PodDisruptionBudgets, retried until --timeout, the node left cordoned; DaemonSet and emptyDir pods need their flags).

`kubectl(args, stdin=None)` runs kubectl with the space-separated `args` and returns the CompletedProcess; the
cluster has the nodes NODES, all Ready and schedulable."""
import functools
import json

import yaml

from tests.lab import test_standins

NODES = ("edge-1", "edge-2", "edge-3")
wait_for = functools.partial(test_standins.wait_for, timeout=30.0)  # kwok's pods run within seconds


def apply(kubectl, *docs):
    done = kubectl("apply -f -", stdin=yaml.safe_dump_all(docs))
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


def pods_of(kubectl, app):
    items = json.loads(kubectl("get pods -n default -o json").stdout)["items"]
    return [p for p in items if p["metadata"].get("labels", {}).get("app") == app
            and not p["metadata"].get("deletionTimestamp")]


def running(kubectl, app, count):
    """Whether `app` has exactly `count` pods, each bound to a node and Ready (the stand-in's at once, kwok's soon)."""
    pods = pods_of(kubectl, app)
    return len(pods) == count and all(p["spec"].get("nodeName") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
        for p in pods)


def node(kubectl, name):
    return json.loads(kubectl(f"get node {name} -o json").stdout)


def clean(kubectl):
    """Remove what a scenario made and uncordon every node."""
    for kind in ("deployment", "daemonset", "pdb"):
        for name in kubectl(f"get {kind} -n default -o name").stdout.split():
            kubectl(f"delete {kind} -n default {name.split('/', 1)[1]}")
    assert wait_for(lambda: json.loads(kubectl("get pods -n default -o json").stdout)["items"] == [])
    for name in NODES:
        kubectl(f"uncordon {name}")


def cordon_keeps_new_pods_off_the_node_and_moves_none(kubectl):
    apply(kubectl, deployment("web", 3))
    assert wait_for(lambda: running(kubectl, "web", 3))
    before = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods_of(kubectl, "web")}
    assert sorted(before.values()) == list(NODES)  # spread, one each
    assert kubectl("cordon edge-2").stdout == "node/edge-2 cordoned\n"
    assert kubectl("cordon edge-2").stdout == "node/edge-2 already cordoned\n"
    cordoned = node(kubectl, "edge-2")
    assert cordoned["spec"]["unschedulable"] is True
    assert {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"} in [
        {k: t[k] for k in ("key", "effect")} for t in cordoned["spec"]["taints"]]
    apply(kubectl, deployment("web", 6))
    assert wait_for(lambda: running(kubectl, "web", 6))
    after = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods_of(kubectl, "web")}
    assert {n: after[n] for n in before} == before  # cordoning moves nothing
    assert "edge-2" not in [after[n] for n in after if n not in before]
    assert kubectl("uncordon edge-2").stdout == "node/edge-2 uncordoned\n"
    assert "unschedulable" not in node(kubectl, "edge-2")["spec"]
    assert kubectl("uncordon edge-9").returncode == 1


def drain_evicts_within_the_budget_and_the_deployment_starts_them_elsewhere(kubectl):
    apply(kubectl, deployment("web", 3), budget("web", 2))
    assert wait_for(lambda: running(kubectl, "web", 3))
    assert wait_for(lambda: json.loads(kubectl("get pdb web -n default -o json").stdout).get(
        "status", {}).get("disruptionsAllowed") == 1)
    on_edge_2 = [p["metadata"]["name"] for p in pods_of(kubectl, "web") if p["spec"]["nodeName"] == "edge-2"]
    drained = kubectl("drain edge-2 --ignore-daemonsets --delete-emptydir-data --timeout=30s")
    assert drained.returncode == 0, drained.stderr
    assert f"evicting pod default/{on_edge_2[0]}" in drained.stdout and drained.stdout.endswith("node/edge-2 drained\n")
    assert wait_for(lambda: running(kubectl, "web", 3))
    placed = [p["spec"]["nodeName"] for p in pods_of(kubectl, "web")]
    assert len(placed) == 3 and "edge-2" not in placed
    assert node(kubectl, "edge-2")["spec"]["unschedulable"] is True


def a_budget_that_allows_no_disruption_blocks_the_drain_until_its_timeout(kubectl):
    apply(kubectl, deployment("db", 1, node="edge-3"), budget("db", 1))
    assert wait_for(lambda: running(kubectl, "db", 1))
    assert wait_for(lambda: json.loads(kubectl("get pdb db -n default -o json").stdout).get(
        "status", {}).get("currentHealthy") == 1)
    pdb = json.loads(kubectl("get pdb db -n default -o json").stdout)
    assert pdb["status"]["disruptionsAllowed"] == 0 and pdb["status"]["currentHealthy"] == 1
    drained = kubectl("drain edge-3 --ignore-daemonsets --delete-emptydir-data --timeout=2s")
    pod = pods_of(kubectl, "db")[0]["metadata"]["name"]
    assert drained.returncode == 1
    timed_out = f'error when evicting pods/"{pod}" -n "default": global timeout reached: 2s'
    assert drained.stderr == (  # kubectl v1.37.2's words, line for line (the kit shows them when a drain fails)
        f'error when evicting pods/"{pod}" -n "default" (will retry after 5s): Cannot evict pod as it would violate '
        f"the pod's disruption budget.\n"
        f'There are pending pods in node "edge-3" when an error occurred: {timed_out}\npod/{pod}\n'
        f'error: unable to drain node "edge-3" due to error: {timed_out}, continuing command...\n'
        f"There are pending nodes to be drained:\n edge-3\n{timed_out}\n"), drained.stderr
    assert [p["spec"]["nodeName"] for p in pods_of(kubectl, "db")] == ["edge-3"]  # still there
    assert node(kubectl, "edge-3")["spec"]["unschedulable"] is True  # kubectl does not uncordon


def daemonset_and_emptydir_pods_need_their_flags(kubectl):
    daemon = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agentd", "namespace": "default"},
              "spec": {"selector": {"matchLabels": {"app": "agentd"}},
                       "template": {"metadata": {"labels": {"app": "agentd"}},
                                    "spec": {"containers": [{"name": "d", "image": "registry.lab/d:1"}]}}}}
    apply(kubectl, daemon, deployment("cache", 1, node="edge-2", volumes=[{"name": "tmp", "emptyDir": {}}]))
    assert wait_for(lambda: running(kubectl, "cache", 1) and sorted(  # a pod per node (drain ignores its phase)
        p["spec"].get("nodeName", "") for p in pods_of(kubectl, "agentd")) == list(NODES))
    daemon_pod = next(p["metadata"]["name"] for p in pods_of(kubectl, "agentd") if p["spec"]["nodeName"] == "edge-2")
    cache_pod = pods_of(kubectl, "cache")[0]["metadata"]["name"]
    refused = kubectl("drain edge-2 --timeout=10s")
    assert refused.returncode == 1 and refused.stdout == "node/edge-2 cordoned\n"
    errors = [f"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/{daemon_pod}",
              f"cannot delete Pods with local storage (use --delete-emptydir-data to override): default/{cache_pod}"]
    # in either order: kubectl groups the refusals in a Go map (k8s.io/kubectl pkg/drain/filters.go errors())
    assert refused.stderr in [(f'error: unable to drain node "edge-2" due to error: [{", ".join(order)}], '
                               "continuing command...\nThere are pending nodes to be drained:\n edge-2\n"
                               + "".join(f"{e}\n" for e in order)) for order in (errors, errors[::-1])], refused.stderr
    assert [p["spec"]["nodeName"] for p in pods_of(kubectl, "cache")] == ["edge-2"]
    drained = kubectl("drain edge-2 --ignore-daemonsets --delete-emptydir-data --timeout=10s")
    assert drained.returncode == 0 and "Warning: ignoring DaemonSet-managed Pods: default/agentd-" in drained.stderr
    assert "edge-2" in [p["spec"]["nodeName"] for p in pods_of(kubectl, "agentd")]  # daemon pods stay
    assert wait_for(lambda: len(pods_of(kubectl, "cache")) == 1)
    pending = pods_of(kubectl, "cache")[0]
    assert "nodeName" not in pending["spec"] and pending["status"]["phase"] == "Pending"  # its only node is cordoned


SCENARIOS = (cordon_keeps_new_pods_off_the_node_and_moves_none,
             drain_evicts_within_the_budget_and_the_deployment_starts_them_elsewhere,
             a_budget_that_allows_no_disruption_blocks_the_drain_until_its_timeout,
             daemonset_and_emptydir_pods_need_their_flags)
