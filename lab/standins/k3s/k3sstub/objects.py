"""Applying and deleting objects in the stand-in cluster (what kubectl apply/delete change)."""
import json
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


def _known_kinds(cluster) -> set[str]:
    crds = [o for o in cluster.objects.values() if o["kind"] == "CustomResourceDefinition"]
    return {o.get("spec", {}).get("names", {}).get("kind") for o in crds}


def _check_admission(cluster, obj: dict, source: str) -> None:
    kind, name, ns = obj["kind"], obj["metadata"]["name"], _namespace_of(obj)
    api = obj.get("apiVersion", "")
    if api.startswith("metallb.io/") and kind not in _known_kinds(cluster):
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
