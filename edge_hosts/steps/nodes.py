"""What the kit changes about a cluster's nodes through the first server's kubectl: drain (PDBs honoured),
uncordon, and removing a stale node with its node-password Secret."""
from __future__ import annotations

import shlex

from edge_hosts.access.ssh import HostSession
from edge_hosts.facts.cluster import KUBECTL


def remove_stale_node(session: HostSession, name: str) -> bool:
    """Delete a node the cluster still knows and its node-password secret (kube-system/<node>.node-password.k3s,
    pkg/nodepassword), so a re-imaged host with a new node password can register under its old name again."""
    node = shlex.quote(name)
    out = session.check(f"""{KUBECTL} get node {node} >/dev/null 2>&1 || {{ echo absent; exit 0; }}
{KUBECTL} delete node {node} --wait=false >/dev/null
{KUBECTL} -n kube-system delete secret {shlex.quote(name + ".node-password.k3s")} --ignore-not-found >/dev/null
""", f"removing the stale node {name}")
    return "absent" not in out


def drain(session: HostSession, name: str, timeout_s: float) -> None:
    """Cordon the node and evict its pods through the Eviction API, so PodDisruptionBudgets are honoured (a refused
    eviction is retried until the timeout); DaemonSet pods stay, emptyDir data goes (kubectl drain; the node stays
    cordoned when it fails). The kubectl process gets a minute more than its own timeout to report."""
    session.check(f"{KUBECTL} drain {shlex.quote(name)} --ignore-daemonsets --delete-emptydir-data "
                  f"--timeout={int(timeout_s)}s\n", f"draining node {name}", timeout=timeout_s + 60)


def uncordon(session: HostSession, name: str) -> None:
    session.check(f"{KUBECTL} uncordon {shlex.quote(name)}\n", f"uncordoning node {name}")
