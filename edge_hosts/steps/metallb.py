"""MetalLB on the first server: pinned manifest, wait for its webhook, address pool with retries, smoke test."""
from __future__ import annotations

import json
import secrets
import time

import yaml

from common import k3s
from common.address_ranges import address_range, contains
from edge_hosts.inventory.advice import speaker_tolerations
from edge_hosts.artifacts.downloads import Artifact, ArtifactSource
from edge_hosts.inventory.model import Inventory
from edge_hosts.access.ssh import HostSession, RemoteError
from edge_hosts.facts.cluster import KUBECTL

NAMESPACE = "metallb-system"
POOL = k3s.METALLB_POOL
MANIFEST_ANNOTATION = "mlops-edge-kit/metallb-manifest-sha256"
TOLERATIONS_ANNOTATION = "mlops-edge-kit/speaker-extra-tolerations"
ROLLOUT_TIMEOUT = "180s"


def _tolerations_note(inventory: Inventory) -> str:
    extra = speaker_tolerations(inventory)
    return json.dumps(extra, sort_keys=True, separators=(",", ":")) if extra else ""


def pool_documents(inventory: Inventory, manifest_sha: str) -> str:
    annotations = {MANIFEST_ANNOTATION: manifest_sha}
    if _tolerations_note(inventory):
        annotations[TOLERATIONS_ANNOTATION] = _tolerations_note(inventory)
    meta = {"name": POOL, "namespace": NAMESPACE, "annotations": annotations}
    pool = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": meta,
            "spec": {"addresses": list(inventory.metallb.addresses)}}
    advert = {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
              "metadata": {"name": POOL, "namespace": NAMESPACE}, "spec": {"ipAddressPools": [POOL]}}
    return yaml.safe_dump_all([pool, advert], sort_keys=True)


def current_pool(session: HostSession) -> dict | None:
    result = session.run(f"{KUBECTL} get ipaddresspools.metallb.io -n {NAMESPACE} -o json\n")
    return kit_pool(json.loads(result.out) if result.code == 0 else None)


def kit_pool(pools: dict | None) -> dict | None:
    """The kit's pool from a pool list (None: MetalLB not installed or no pool yet)."""
    return next((p for p in (pools or {}).get("items", []) if p["metadata"]["name"] == POOL), None)


def pool_matches(pool: dict | None, inventory: Inventory, manifest_sha: str) -> bool:
    if pool is None:
        return False
    annotations = pool["metadata"].get("annotations", {})
    return (pool.get("spec", {}).get("addresses") == list(inventory.metallb.addresses)
            and annotations.get(MANIFEST_ANNOTATION) == manifest_sha
            and annotations.get(TOLERATIONS_ANNOTATION, "") == _tolerations_note(inventory))


def ensure_metallb(session: HostSession, inventory: Inventory, source: ArtifactSource, pool: dict | None,
                   webhook_wait_s: float = 120) -> bool:
    """Install/upgrade MetalLB and its pool unless the applied pool already matches; return whether it changed."""
    manifest = source.metallb_artifact()
    manifest_sha = manifest.sha256
    if pool_matches(pool, inventory, manifest_sha):
        return False
    source.ensure(session, [manifest], None)
    session.check(f"{KUBECTL} apply -f {manifest.remote} >/dev/null\n", "applying the MetalLB manifest")
    if speaker_tolerations(inventory):
        _tolerate_site_taints(session, inventory, source, manifest)
    session.check(f"""set -e
{KUBECTL} -n {NAMESPACE} rollout status deployment/controller --timeout={ROLLOUT_TIMEOUT} >/dev/null
{KUBECTL} -n {NAMESPACE} rollout status daemonset/speaker --timeout={ROLLOUT_TIMEOUT} >/dev/null
""", "waiting for the MetalLB controller and speakers")
    _wait_webhook_endpoints(session, webhook_wait_s)
    _apply_with_retries(session, pool_documents(inventory, manifest_sha), webhook_wait_s)
    smoke_test(session, inventory)
    return True


def _tolerate_site_taints(session: HostSession, inventory: Inventory, source: ArtifactSource,
                          manifest: Artifact) -> None:
    """Re-apply the verified manifest's speaker DaemonSet with the site's extra tolerations (a later apply of the
    plain manifest takes them away again)."""
    text = (source.local_file(manifest).read_text() if source.bundle
            else session.check(f"cat {manifest.remote}\n", "reading the MetalLB manifest"))
    speaker = next(d for d in yaml.safe_load_all(text) if d and d.get("kind") == "DaemonSet"
                   and d["metadata"]["name"] == "speaker")
    pod = speaker["spec"]["template"]["spec"]
    pod["tolerations"] = [*pod.get("tolerations", []), *speaker_tolerations(inventory)]
    session.check(f"{KUBECTL} apply -f - >/dev/null <<'KIT_EOF'\n{yaml.safe_dump(speaker)}KIT_EOF\n",
                  "adding the site's tolerations to the MetalLB speaker")


def _wait_webhook_endpoints(session: HostSession, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        result = session.run(f"{KUBECTL} -n {NAMESPACE} get endpoints metallb-webhook-service -o json\n")
        if result.code == 0 and any(s.get("addresses") for s in json.loads(result.out).get("subsets") or []):
            return
        time.sleep(1)
    raise RemoteError(f"the MetalLB webhook service has no endpoints after {wait_s:.0f} s")


def _apply_with_retries(session: HostSession, documents: str, wait_s: float) -> None:
    """Apply the pool; the webhook refuses it for a while after its endpoints appear."""
    deadline = time.monotonic() + wait_s
    delay = 0.5
    while True:
        result = session.run(f"{KUBECTL} apply -f - >/dev/null <<'KIT_EOF'\n{documents}KIT_EOF\n")
        if result.code == 0:
            return
        if time.monotonic() > deadline:
            raise RemoteError(f"the MetalLB webhook still refuses the address pool: {result.err.strip()[-300:]}")
        time.sleep(delay)
        delay = min(delay * 2, 5)


def smoke_test(session: HostSession, inventory: Inventory, wait_s: float = 60) -> str:
    """A LoadBalancer service must get an address from the pool; it is removed afterwards."""
    name = f"kit-smoke-{secrets.token_hex(3)}"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 80}],
                        "selector": {"app": name}}}
    session.check(f"{KUBECTL} apply -f - >/dev/null <<'KIT_EOF'\n{yaml.safe_dump(service)}KIT_EOF\n",
                  "creating the smoke-test LoadBalancer service")
    try:
        address = _wait_ingress_ip(session, name, wait_s)
    finally:
        session.run(f"{KUBECTL} delete svc {name} -n default >/dev/null\n")
    if not contains([address_range(r) for r in inventory.metallb.addresses], address):
        raise RemoteError(f"smoke test: the service got {address}, which is outside the MetalLB pool")
    return address


def _wait_ingress_ip(session: HostSession, name: str, wait_s: float) -> str:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        result = session.run(f"{KUBECTL} get svc {name} -n default -o json\n")
        if result.code == 0:
            ingress = json.loads(result.out).get("status", {}).get("loadBalancer", {}).get("ingress") or []
            if ingress and ingress[0].get("ip"):
                return ingress[0]["ip"]
        time.sleep(1)
    raise RemoteError(f"smoke test: the LoadBalancer service got no address in {wait_s:.0f} s")
