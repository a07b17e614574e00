"""edge.reset: remove k3s from the site's hosts, agents first, then servers, deleting nodes from the cluster."""
from __future__ import annotations

import shlex

from edge_hosts import k3s
from edge_hosts.engine import Engine, connect
from edge_hosts.probe import SYSCTL_FILE
from edge_hosts.report import HostResult
from edge_hosts.state import TokenStore
from edge_hosts.steps.cluster import KUBECTL
from edge_hosts.steps.context import HostContext



def remove_node(first: HostContext, name: str) -> None:
    """Drain and delete a node through the first server (a node already gone is fine)."""
    node = shlex.quote(name)
    first.session.run(f"""{KUBECTL} get node {node} >/dev/null 2>&1 || exit 0
{KUBECTL} drain {node} --ignore-daemonsets --delete-emptydir-data --force --timeout=60s >/dev/null 2>&1
{KUBECTL} delete node {node} >/dev/null
""")


def uninstall(ctx: HostContext) -> bool:
    """Run k3s's own uninstall script, then remove what the kit added; True when anything was there."""
    paths = " ".join(shlex.quote(p) for p in (k3s.BIN, k3s.INSTALL_SCRIPT, SYSCTL_FILE, "/etc/rancher/k3s",
                                               "/var/lib/rancher/k3s"))
    out = ctx.session.check(f"""found=no
for s in /usr/local/bin/k3s-agent-uninstall.sh /usr/local/bin/k3s-uninstall.sh; do
  [ -x "$s" ] && {{ "$s" >/dev/null 2>&1 || {{ echo "$s failed" >&2; exit 1; }}; found=yes; }}
done
for f in {paths}; do [ -e "$f" ] && {{ rm -rf "$f"; found=yes; }}; done
echo "found=$found"
""", "uninstalling k3s")
    return "found=yes" in out


def reset(engine: Engine, site: str) -> list[HostResult]:
    inventory = engine.inventory
    first = engine.contexts[inventory.first_server.name]
    engine.each(list(engine.contexts.values()), lambda c: engine.step(c, "connect", connect))
    first_api = not first.failed and first.session.run(f"{KUBECTL} get --raw /readyz >/dev/null 2>&1\n").code == 0

    def remove(ctx: HostContext) -> None:
        if first_api and ctx is not first:
            engine.step(ctx, "delete-node", lambda c: remove_node(first, c.host.name) or False)
        engine.step(ctx, "uninstall", uninstall)

    engine.each([engine.contexts[h.name] for h in inventory.agents], remove)
    for server in reversed(inventory.servers):
        remove(engine.contexts[server.name])
    results = engine.results([h.name for h in inventory.hosts])
    if all(r.status != "failed" for r in results):
        TokenStore(site).forget()
    return results
