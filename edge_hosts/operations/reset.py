"""edge.reset: remove k3s from the site's hosts, agents first, then servers, deleting nodes from the cluster; etcd
snapshots, the site's tokens and the k3s-selinux policy package are kept unless asked to forget them."""
from __future__ import annotations

import shlex

from common import k3s
from edge_hosts.engine.fanout import Engine, connect
from edge_hosts.facts.probe import SYSCTL_FILE
from edge_hosts.engine.results import HostResult
from edge_hosts.access.state import TokenStore
from edge_hosts.facts.cluster import KUBECTL
from edge_hosts.engine.context import HostContext

SNAPSHOTS_KEPT = "/var/lib/rancher/mlops-edge-kit-snapshots"  # outside k3s's data dir, which the uninstall removes


def remove_node(first: HostContext, name: str) -> None:
    """Drain and delete a node through the first server (a node already gone is fine)."""
    node = shlex.quote(name)
    first.session.run(f"""{KUBECTL} get node {node} >/dev/null 2>&1 || exit 0
{KUBECTL} drain {node} --ignore-daemonsets --delete-emptydir-data --force --timeout=60s >/dev/null 2>&1
{KUBECTL} delete node {node} >/dev/null
""")


def keep_snapshots(ctx: HostContext) -> bool:
    """Move a server's etcd snapshots out of k3s's data directory (which the uninstall removes): a restore
    needs them and the site's server token, which the kit keeps too. True when there were any."""
    out = ctx.session.check(f"""src={k3s.SNAPSHOT_DIR}
[ -n "$(ls -A "$src" 2>/dev/null)" ] || exit 0
dst={SNAPSHOTS_KEPT}/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p {SNAPSHOTS_KEPT} && chmod 700 {SNAPSHOTS_KEPT} && mv "$src" "$dst" && echo "kept=$dst"
""", "keeping the etcd snapshots")
    return "kept=" in out


# the uninstall script install.sh writes ends with the k3s-selinux package's removal ("if type yum >/dev/null 2>&1;
# then yum remove -y k3s-selinux ... elif rpm-ostree ... elif zypper ... fi"): without it the next bootstrap stops
# at preflight on an enforcing host, so the kit runs the script without that last block unless asked to forget
KEEP_POLICY = """t=$(mktemp) && sed '/^if type yum >\\/dev\\/null 2>&1; then$/,$d' "$s" > "$t"
  if grep -q k3s-selinux "$t"; then
    rm -f "$t"; echo "$s removes the k3s-selinux policy in a way the kit cannot leave out; run edge.reset --forget" >&2
    exit 1
  fi
  run="sh $t"
"""


def uninstall(ctx: HostContext, keep_policy: bool = True) -> bool:
    """Run k3s's own uninstall script (without its removal of the k3s-selinux policy package when `keep_policy`),
    then remove what the kit added; True when anything was there."""
    paths = " ".join(shlex.quote(p) for p in (k3s.BIN, k3s.INSTALL_SCRIPT, SYSCTL_FILE, "/etc/rancher/k3s",
                                               "/var/lib/rancher/k3s"))
    out = ctx.session.check(f"""found=no
for s in /usr/local/bin/k3s-agent-uninstall.sh /usr/local/bin/k3s-uninstall.sh; do
  [ -x "$s" ] || continue
  run=$s
  {KEEP_POLICY if keep_policy else ""}$run >/dev/null 2>&1 || {{ echo "$s failed" >&2; exit 1; }}
  [ "$run" = "$s" ] || rm -f "$t"
  found=yes
done
for f in {paths}; do [ -e "$f" ] && {{ rm -rf "$f"; found=yes; }}; done
echo "found=$found"
""", "uninstalling k3s")
    return "found=yes" in out


def reset(engine: Engine, site: str, forget: bool = False) -> list[HostResult]:
    """Remove k3s; servers' etcd snapshots are moved aside, the site's tokens and the k3s-selinux policy package
    kept, unless `forget`."""
    inventory = engine.inventory
    first = engine.contexts[inventory.first_server.name]
    engine.each(list(engine.contexts.values()), lambda c: engine.step(c, "connect", connect))
    first_api = not first.failed and first.session.run(f"{KUBECTL} get --raw /readyz >/dev/null 2>&1\n").code == 0

    def remove(ctx: HostContext) -> None:
        if first_api and ctx is not first:
            engine.step(ctx, "delete-node", lambda c: remove_node(first, c.host.name) or False)
        if ctx.host.role == "server" and not forget:
            engine.step(ctx, "keep-snapshots", keep_snapshots)
        engine.step(ctx, "uninstall", lambda c: uninstall(c, keep_policy=not forget))

    engine.each([engine.contexts[h.name] for h in inventory.agents], remove)
    for server in reversed(inventory.servers):
        remove(engine.contexts[server.name])
    results = engine.results([h.name for h in inventory.hosts])
    if forget and all(r.status != "failed" for r in results):
        TokenStore(site).forget()
    return results
