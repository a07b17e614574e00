"""edge.status: per host reachability, k3s service, node readiness and version, its certificates' expiry;
the site's MetalLB pool and the kubeconfig's client certificate expiry."""
from __future__ import annotations

import datetime
from pathlib import Path

from edge_hosts.operations import certs
from common import k3s
from edge_hosts.engine.fanout import Engine
from edge_hosts.facts import cluster
from edge_hosts.access.ssh import RemoteError, TransportError
from edge_hosts.steps.metallb import kit_pool


def status(engine: Engine, kubeconfig: Path | None = None) -> dict:
    """One dict for the site: hosts (as the hosts and the first server see them), the MetalLB pool and, with a
    kubeconfig, when its client certificate for the site expires."""
    contexts = list(engine.contexts.values())
    engine.each(contexts, engine.connect_and_probe)
    first = engine.contexts[engine.inventory.first_server.name]
    nodes, pool, error = {}, None, None
    now = datetime.datetime.now(datetime.timezone.utc)
    if not first.failed and first.facts.yes("active"):
        try:
            view = cluster.snapshot(first.session)
            nodes, pool = view.nodes, kit_pool(view.pools)
        except (RemoteError, TransportError, ValueError) as err:
            error = f"{first.host.name}: {err}"
    hosts = []
    for ctx in contexts:
        node = nodes.get(ctx.host.name)
        reachable = ctx.facts is not None
        hosts.append({"name": ctx.host.name, "role": ctx.host.role, "address": str(ctx.host.address),
                      "reachable": reachable, "service": k3s.unit(ctx.host.role),
                      "active": reachable and ctx.facts.yes("active"),
                      "enabled": reachable and ctx.facts.yes("enabled"),
                      "ready": bool(node and node.ready), "version": node.version if node else None,
                      "certificates": _certificates(ctx, now), "error": ctx.error})
    addresses = pool.get("spec", {}).get("addresses") if pool else None
    client = certs.kubeconfig_report(kubeconfig, engine.inventory.site, now) if kubeconfig else None
    return {"site": engine.inventory.site, "hosts": hosts, "metallb": {"pool": addresses}, "kubeconfig": client,
            "error": error}


def _certificates(ctx, now: datetime.datetime) -> dict | None:
    """A reachable host's soonest certificate expiry, its agent's certificates included (None when unreadable)."""
    if ctx.facts is None:
        return None
    try:
        return certs.summary(certs.host_expiries(ctx.session, ctx.host.role), now)
    except (RemoteError, TransportError, ValueError) as err:
        ctx.error = ctx.error or f"certificates: {err}"
        return None
