"""MetalLB behaviour: rollout delays, the webhook's refusal window, LoadBalancer addresses."""
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
        return base + f'no endpoints available for service "metallb-webhook-service"'
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
