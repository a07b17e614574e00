"""edge.status: per host reachability, k3s service, node readiness and version; the site's MetalLB pool."""
from __future__ import annotations

from edge_hosts import k3s
from edge_hosts.engine import Engine
from edge_hosts.steps import cluster
from edge_hosts.ssh import RemoteError, TransportError
from edge_hosts.steps.metallb import kit_pool


def status(engine: Engine) -> dict:
    """One dict for the site: hosts (as the hosts and the first server see them) and the MetalLB pool."""
    contexts = list(engine.contexts.values())
    engine.each(contexts, engine.connect_and_probe)
    first = engine.contexts[engine.inventory.first_server.name]
    nodes, pool, error = {}, None, None
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
                      "error": ctx.error})
    addresses = pool.get("spec", {}).get("addresses") if pool else None
    return {"site": engine.inventory.site, "hosts": hosts, "metallb": {"pool": addresses}, "error": error}
