"""MetalLB behaviour: rollout delays, the webhook's refusal window, LoadBalancer addresses."""
import hashlib
import ipaddress
import time

from k3sstub.settings import TIMINGS

NAMESPACE = "metallb-system"
WEBHOOKS = {"IPAddressPool": "ipaddresspoolvalidationwebhook.metallb.io",
            "L2Advertisement": "l2advertisementvalidationwebhook.metallb.io"}
WEBHOOK_PATHS = {"IPAddressPool": "validate-metallb-io-v1beta1-ipaddresspool",
                 "L2Advertisement": "validate-metallb-io-v1beta1-l2advertisement"}


def is_metallb_controller(obj: dict) -> bool:
    meta = obj.get("metadata", {})
    return obj.get("kind") == "Deployment" and meta.get("name") == "controller" \
        and meta.get("namespace") == NAMESPACE


def rollout_ready(applied_at: float | None) -> bool:
    return applied_at is not None and time.time() >= applied_at + TIMINGS["rollout"]


def endpoints_ready(applied_at: float | None) -> bool:
    return applied_at is not None and \
        time.time() >= applied_at + TIMINGS["rollout"] + TIMINGS["endpoints"]


def webhook_error(kind: str, applied_at: float | None) -> str | None:
    """The webhook failure a create/update of `kind` meets now, or None when it is served."""
    base = f'failed calling webhook "{WEBHOOKS[kind]}": failed to call webhook: Post ' \
           f'"https://metallb-webhook-service.{NAMESPACE}.svc:443/{WEBHOOK_PATHS[kind]}?timeout=10s": '
    if not endpoints_ready(applied_at):
        return base + 'no endpoints available for service "metallb-webhook-service"'
    opens = applied_at + TIMINGS["rollout"] + TIMINGS["endpoints"] + TIMINGS["webhook_refusal"]
    if time.time() < opens:
        return base + "dial tcp 10.43.140.11:443: connect: connection refused"
    return None


def endpoints_object(applied_at: float | None) -> dict:
    subsets = []
    if endpoints_ready(applied_at):
        subsets = [{"addresses": [{"ip": "10.42.0.7", "targetRef": {"kind": "Pod",
                                   "name": "controller-lab", "namespace": NAMESPACE}}],
                    "ports": [{"port": 9443, "protocol": "TCP"}]}]
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "metallb-webhook-service", "namespace": NAMESPACE},
            "subsets": subsets}


def pool_addresses(pool: dict) -> list[str]:
    """Every address a pool hands out ("a-b" ranges and CIDRs), in order."""
    found = []
    for entry in pool.get("spec", {}).get("addresses", []):
        entry = str(entry)
        if "-" in entry:
            first, last = (ipaddress.ip_address(part.strip()) for part in entry.split("-", 1))
            found += [str(ipaddress.ip_address(n)) for n in range(int(first), int(last) + 1)]
        else:
            found += [str(ip) for ip in ipaddress.ip_network(entry, strict=False)]
    return found


def validate_pool(pool: dict) -> str | None:
    """The webhook's denial for a malformed pool, or None."""
    try:
        if not pool_addresses(pool):
            return "admission webhook denied the request: pool has no addresses"
    except ValueError as err:
        return f'admission webhook "{WEBHOOKS["IPAddressPool"]}" denied the request: {err}'
    return None


def assign_addresses(services: list[dict], pools: list[dict]) -> bool:
    """Give LoadBalancer services without an address the first free pool address."""
    used = {ing["ip"] for svc in services
            for ing in svc.get("status", {}).get("loadBalancer", {}).get("ingress", [])}
    free = [ip for pool in pools for ip in pool_addresses(pool) if ip not in used]
    changed = False
    for svc in services:
        if svc.get("spec", {}).get("type") != "LoadBalancer":
            continue
        if svc.get("status", {}).get("loadBalancer", {}).get("ingress") or not free:
            continue
        wanted = svc["spec"].get("loadBalancerIP")
        ip = wanted if wanted in free else (None if wanted else free[0])
        if ip is None:
            continue
        free.remove(ip)
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}
        changed = True
    return changed


# --- where the speaker DaemonSet runs ----------------------------------------------------------
# tolerations the DaemonSet controller adds to every daemon pod (kubernetes pkg/controller/daemon/util);
# network-unavailable only for host-network pods such as the speaker
DAEMONSET_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                           "effect": "NoSchedule"}


def tolerates(toleration: dict, taint: dict) -> bool:
    """Kubernetes' Toleration.ToleratesTaint: effect (empty matches all), key (empty + Exists matches all), value."""
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    if toleration.get("key") and toleration["key"] != taint["key"]:
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return True
    return toleration.get("value", "") == taint.get("value", "")


def schedulable_nodes(pod_spec: dict, nodes: list[dict], daemon: bool = True) -> list[str]:
    """Nodes a (daemon) pod with `pod_spec` may run on: nodeSelector matches and every NoSchedule/NoExecute
    taint is tolerated (PreferNoSchedule does not keep pods away)."""
    tolerations = list(pod_spec.get("tolerations") or []) + (DAEMONSET_TOLERATIONS if daemon else [])
    if daemon and pod_spec.get("hostNetwork"):
        tolerations.append(HOST_NETWORK_TOLERATION)
    selector = pod_spec.get("nodeSelector") or {}
    chosen = []
    for node in nodes:
        labels = node["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        taints = [t for t in node["spec"].get("taints", []) if t["effect"] in ("NoSchedule", "NoExecute")]
        if all(any(tolerates(tol, taint) for tol in tolerations) for taint in taints):
            chosen.append(node["metadata"]["name"])
    return chosen


def daemonset_with_status(ds: dict, nodes: list[dict], applied_at: float | None) -> dict:
    """The DaemonSet as the API returns it: status counts from the nodes it may run on."""
    chosen = schedulable_nodes(ds["spec"]["template"]["spec"], nodes)
    ready = len(chosen) if rollout_ready(applied_at) else 0
    return {**ds, "status": {"currentNumberScheduled": len(chosen), "desiredNumberScheduled": len(chosen),
                             "numberMisscheduled": 0, "numberReady": ready, "numberAvailable": ready,
                             "updatedNumberScheduled": len(chosen), "observedGeneration": 1}}


def pods(daemonsets: list[dict], deployments: list[dict], nodes: list[dict], applied_at: float | None) -> list[dict]:
    """Pods of the MetalLB workloads: one per schedulable node for each DaemonSet, one per Deployment replica."""
    phase = "Running" if rollout_ready(applied_at) else "Pending"
    found = []
    for ds in daemonsets:
        for node in schedulable_nodes(ds["spec"]["template"]["spec"], nodes):
            found.append(_pod(ds, f"{ds['metadata']['name']}-{_suffix(node)}", node, phase))
    for deployment in deployments:
        eligible = schedulable_nodes(deployment["spec"]["template"]["spec"], nodes, daemon=False)
        found.append(_pod(deployment, f"{deployment['metadata']['name']}-lab", eligible[0] if eligible else "",
                          phase if eligible else "Pending"))
    return found


def _suffix(node: str) -> str:
    return hashlib.sha256(node.encode()).hexdigest()[:5]


def _pod(owner: dict, name: str, node: str, phase: str) -> dict:
    labels = owner["spec"]["template"]["metadata"].get("labels", {})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": owner["metadata"]["namespace"], "labels": labels,
                         "ownerReferences": [{"kind": owner["kind"], "name": owner["metadata"]["name"]}]},
            "spec": {**({"nodeName": node} if node else {}),
                     **{k: v for k, v in owner["spec"]["template"]["spec"].items()
                        if k in ("tolerations", "nodeSelector", "hostNetwork")}},
            "status": {"phase": phase, **({"conditions": [{"type": "Ready", "status": "True"}]}
                                          if phase == "Running" else {})}}
