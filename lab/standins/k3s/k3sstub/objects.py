"""Applying and deleting objects in the stand-in cluster (what kubectl apply/delete change)."""
import json
import secrets
import time

import yaml

from k3sstub import metallb

CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                  "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
                  "PriorityClass", "StorageClass", "Node"}
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
BUILTIN_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}
CORE_GROUPS = {"v1"}


class ApplyError(Exception):
    """One document could not be applied; the message is kubectl's stderr line."""


def key(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind}/{namespace or ''}/{name}"


def display(obj: dict) -> str:
    """kubectl's 'kind.group/name' label."""
    api = obj.get("apiVersion", "v1")
    group = "" if api in CORE_GROUPS else "." + api.split("/")[0]
    return f"{obj['kind'].lower()}{group}/{obj['metadata']['name']}"


def parse_documents(text: str) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as err:
        raise ApplyError(f"error: error parsing STDIN: {err}") from None
    for doc in docs:
        if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("metadata", {}).get("name"):
            raise ApplyError("error: error validating data: kind and metadata.name are required")
    return docs


def _namespace_of(obj: dict) -> str | None:
    if obj["kind"] in CLUSTER_SCOPED:
        return None
    return obj["metadata"].get("namespace") or "default"


def known_kinds(cluster) -> set[str]:
    """Kinds the applied CustomResourceDefinitions define."""
    crds = [o for o in cluster.objects.values() if o["kind"] == "CustomResourceDefinition"]
    return {o.get("spec", {}).get("names", {}).get("kind") for o in crds}


def _check_admission(cluster, obj: dict, source: str) -> None:
    kind, name, ns = obj["kind"], obj["metadata"]["name"], _namespace_of(obj)
    api = obj.get("apiVersion", "")
    if api.startswith("metallb.io/") and kind not in known_kinds(cluster):
        raise ApplyError(f'error: resource mapping not found for name: "{name}" namespace: '
                         f'"{ns or ""}" from "{source}": no matches for kind "{kind}" in version '
                         f'"{api}"\nensure CRDs are installed first')
    if ns and ns not in BUILTIN_NAMESPACES and key("Namespace", None, ns) not in cluster.objects:
        raise ApplyError(f'Error from server (NotFound): error when creating "{source}": '
                         f'namespaces "{ns}" not found')
    if kind in metallb.WEBHOOKS:
        failure = metallb.webhook_error(kind, cluster.metallb_applied_at)
        if failure:
            raise ApplyError(f'Error from server (InternalError): error when creating '
                             f'"{source}": Internal error occurred: {failure}')
        if kind == "IPAddressPool" and (denied := metallb.validate_pool(obj)):
            raise ApplyError(f'Error from server (Forbidden): error when creating "{source}": {denied}')


def apply_one(cluster, obj: dict, source: str) -> str:
    """Create or update one object; returns kubectl's output line."""
    _check_admission(cluster, obj, source)
    ns = _namespace_of(obj)
    obj["metadata"]["namespace"] = ns
    if ns is None:
        obj["metadata"].pop("namespace")
    k = key(obj["kind"], ns, obj["metadata"]["name"])
    old = cluster.objects.get(k)
    # like kubectl apply: the configuration given is kept in the last-applied annotation; the same configuration
    # again (annotations, labels, spec, data: the whole object) is "unchanged", any difference "configured"
    applied = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    if old is not None and old["metadata"].get("annotations", {}).get(LAST_APPLIED) == applied:
        return f"{display(obj)} unchanged"
    obj["metadata"].setdefault("annotations", {})[LAST_APPLIED] = applied
    if obj["kind"] == "Service":    # fields the server set and the configuration does not name are kept
        previous_ip = (old or {}).get("spec", {}).get("clusterIP")
        obj.setdefault("spec", {}).setdefault("clusterIP", previous_ip or _cluster_ip(cluster, k))
    if old is not None and "status" in old and old.get("spec") == obj.get("spec"):
        obj["status"] = old["status"]
    cluster.objects[k] = obj
    if metallb.is_metallb_controller(obj) and cluster.metallb_applied_at is None:
        cluster.metallb_applied_at = time.time()
    return f"{display(obj)} {'configured' if old else 'created'}"


def _cluster_ip(cluster, k: str) -> str:
    taken = sum(1 for o in cluster.objects.values() if o["kind"] == "Service")
    return f"10.43.{(taken // 250) % 250}.{taken % 250 + 2}"


def delete_one(cluster, kind: str, namespace: str | None, name: str, ignore_missing: bool,
               label: str) -> str:
    ns = None if kind in CLUSTER_SCOPED else (namespace or "default")
    removed = cluster.objects.pop(key(kind, ns, name), None)
    if removed is None:
        if ignore_missing:
            return ""
        raise ApplyError(f'Error from server (NotFound): {label} "{name}" not found')
    if metallb.is_metallb_controller(removed):
        cluster.metallb_applied_at = None
    if kind == "Deployment":  # the garbage collector removes its pods (owner references)
        for pod in owned_pods(cluster, removed):
            cluster.objects.pop(key("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"]), None)
    return f"{display(removed)} deleted"


ALL_NAMESPACES = object()   # kubectl -A


def find(cluster, kind: str, namespace) -> list[dict]:
    """Objects of `kind` in `namespace` (default: "default"; ALL_NAMESPACES: every namespace)."""
    ns = None if kind in CLUSTER_SCOPED else (namespace or "default")
    return [o for o in cluster.objects.values() if o["kind"] == kind and
            (namespace is ALL_NAMESPACES or o["metadata"].get("namespace") == ns)]


def refresh_load_balancers(cluster) -> None:
    """Let the MetalLB controller hand out addresses (only once it runs and has pools)."""
    if not metallb.rollout_ready(cluster.metallb_applied_at):
        return
    services = [o for o in cluster.objects.values() if o["kind"] == "Service"]
    pools = [o for o in cluster.objects.values()
             if o["kind"] == "IPAddressPool" and o["metadata"].get("namespace") == metallb.NAMESPACE]
    if metallb.assign_addresses(services, pools):
        cluster.save()


# --- workloads outside MetalLB: pods bound to nodes, PodDisruptionBudgets, eviction ------------------------------
# MetalLB's pods are computed placements (metallb.pods); every other Deployment's pods are stored objects bound to a
# node (spec.nodeName) that stay there until evicted or deleted, as the scheduler and kubelet keep them: cordoning
# a node keeps new pods off it but moves nothing (kubernetes.io/docs/concepts/architecture/nodes, "cordon").
PDB_VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def has_stored_pods(deployment: dict) -> bool:
    return deployment["metadata"].get("namespace") != metallb.NAMESPACE


def owned_pods(cluster, deployment: dict) -> list[dict]:
    name, ns = deployment["metadata"]["name"], deployment["metadata"].get("namespace")
    return [o for o in cluster.objects.values() if o["kind"] == "Pod" and o["metadata"].get("namespace") == ns
            and any(r.get("deployment") == name for r in o["metadata"].get("ownerReferences", []))]


def reconcile_deployments(cluster) -> None:
    """The Deployment controller and scheduler in one pass: each Deployment has spec.replicas pods (default 1),
    new ones on the schedulable Ready node with the fewest of them; a pod with no such node stays Pending."""
    nodes = cluster.node_list()["items"]
    changed = False
    for deployment in [o for o in cluster.objects.values() if o["kind"] == "Deployment" and has_stored_pods(o)]:
        pods = owned_pods(cluster, deployment)
        wanted = int(deployment.get("spec", {}).get("replicas", 1))
        changed = changed or len(pods) != wanted
        for pod in pods[wanted:]:
            cluster.objects.pop(key("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"]))
        pods = pods[:wanted] + [_new_pod(cluster, deployment) for _ in range(wanted - len(pods))]
        unbound = [pod for pod in pods if not pod["spec"].get("nodeName")]
        for pod in unbound:
            changed = _bind(cluster, pod, deployment, nodes) or changed
    if changed:
        cluster.save()


def _new_pod(cluster, deployment: dict) -> dict:
    meta, template = deployment["metadata"], deployment["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{meta['name']}-{secrets.token_hex(3)}", "namespace": meta["namespace"],
                        "labels": dict(template.get("metadata", {}).get("labels", {})),
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True,
                                             "name": f"{meta['name']}-lab", "deployment": meta["name"]}]},
           "spec": dict(template.get("spec", {})), "status": {"phase": "Pending"}}  # unbound: no nodeName
    cluster.objects[key("Pod", meta["namespace"], pod["metadata"]["name"])] = pod
    return pod


def _bind(cluster, pod: dict, deployment: dict, nodes: list[dict]) -> bool:
    """Schedule a Pending pod; False when no node may take it."""
    ready = [n for n in nodes if n["status"]["conditions"][0]["status"] == "True"]
    eligible = metallb.schedulable_nodes(pod["spec"], ready, daemon=False)
    if not eligible:
        return False
    load = {name: 0 for name in eligible}
    for other in owned_pods(cluster, deployment):
        if other["spec"].get("nodeName") in load:
            load[other["spec"]["nodeName"]] += 1
    pod["spec"]["nodeName"] = min(eligible, key=lambda name: (load[name], name))
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    return True


def _healthy(pod: dict) -> bool:
    return pod["status"].get("phase") == "Running" and bool(pod["spec"].get("nodeName"))


def _selects(pdb: dict, pod: dict) -> bool:
    wanted = pdb.get("spec", {}).get("selector", {}).get("matchLabels", {})
    labels = pod["metadata"].get("labels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def _count(value, total: int, round_up: bool) -> int:
    """An int-or-percent PDB field as a pod count (percentages rounded up, as the disruption controller does)."""
    if isinstance(value, str) and value.endswith("%"):
        share = int(value[:-1]) * total
        return -(-share // 100) if round_up else share // 100
    return int(value)


def pdb_status(cluster, pdb: dict) -> dict:
    """The disruption controller's status: pods selected, healthy ones, and how many may be disrupted now
    (pkg/controller/disruption: desiredHealthy from minAvailable, or expected - maxUnavailable)."""
    ns = pdb["metadata"]["namespace"]
    pods = [p for p in find(cluster, "Pod", ns) if _selects(pdb, p)]
    healthy = sum(1 for p in pods if _healthy(p))
    spec = pdb.get("spec", {})
    if "minAvailable" in spec:
        desired = _count(spec["minAvailable"], len(pods), round_up=True)
    else:
        desired = len(pods) - _count(spec.get("maxUnavailable", 0), len(pods), round_up=True)
    return {"currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": len(pods),
            "disruptionsAllowed": max(0, healthy - desired), "observedGeneration": 1}


def evict(cluster, pod: dict) -> str | None:
    """The Eviction API: None when the pod was evicted (deleted; its Deployment makes a new one elsewhere), else
    the 429 message when a PodDisruptionBudget allows no disruption (pkg/registry/core/pod/storage/eviction.go)."""
    ns = pod["metadata"]["namespace"]
    budgets = [b for b in find(cluster, "PodDisruptionBudget", ns) if _selects(b, pod)]
    if _healthy(pod) and any(pdb_status(cluster, b)["disruptionsAllowed"] < 1 for b in budgets):
        return PDB_VIOLATION
    cluster.objects.pop(key("Pod", ns, pod["metadata"]["name"]), None)
    reconcile_deployments(cluster)
    return None
