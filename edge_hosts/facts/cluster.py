"""Cluster-level reads and waits on the first server: tokens, snapshot (also read by its probe), /readyz, node
readiness."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from common import k3s
from edge_hosts.access.ssh import HostSession, RemoteError, redact
from edge_hosts.access.state import ca_hash

KUBECTL = "k3s kubectl"
SEPARATOR = "--- mlops-edge-kit ---"
READING_MARK = "--- mlops-edge-kit cluster ---"
# one kubectl for nodes and MetalLB pools: `get` takes comma-separated types and prints one List of all their items;
# a type the server lacks (MetalLB's CRD before its install) fails the call before it prints anything
# (kubectl's RESTMapping: "the server doesn't have a resource type"), and the nodes are then asked alone
_START_SNAPSHOT = f"""{{ {KUBECTL} get nodes,ipaddresspools.metallb.io -n metallb-system -o json >"$kit_t/state" \\
    2>"$kit_t/err" || {KUBECTL} get nodes -o json >"$kit_t/state" 2>"$kit_t/err"; }} & kit_n=$!
"""
_PRINT_SNAPSHOT = f"""cat "$kit_t/state"; echo '{SEPARATOR}'; cat {k3s.KUBECONFIG}"""
_PRINT_TOKENS = f"cat {k3s.TOKEN_FILE}; echo '{SEPARATOR}'; cat {k3s.AGENT_TOKEN_FILE}"


@dataclass(frozen=True)
class NodeState:
    name: str
    ready: bool
    version: str
    labels: dict
    taints: list
    unschedulable: bool = False  # cordoned


def read_tokens(session: HostSession, wait_s: float) -> tuple[str, str]:
    """The full server and agent tokens from a running server (read with sudo once k3s has written them); both
    are added to the session's secrets so no output shows them."""
    out = session.check(f"""i=0
until [ -s {k3s.TOKEN_FILE} ] && [ -s {k3s.AGENT_TOKEN_FILE} ]; do
  i=$((i+1)); [ $i -ge {int(wait_s * 2)} ] && {{ echo "k3s wrote no token files in {wait_s:.0f} s" >&2; exit 1; }}
  sleep 0.5
done
{_PRINT_TOKENS}
""", "reading the cluster's tokens", reveal=True)
    server, agent = _tokens(session, out)
    if not (ca_hash(server) and ca_hash(agent)):
        raise RemoteError(f"{k3s.TOKEN_FILE} or {k3s.AGENT_TOKEN_FILE} does not hold a full (K10...) token")
    return server, agent


def _tokens(session: HostSession, text: str) -> tuple[str, str]:
    """The two tokens printed by _PRINT_TOKENS, added to the session's secrets before anything else is done."""
    server, _, agent = (part.strip() for part in text.partition(SEPARATOR))
    session.secrets.update(value for value in (server, agent) if value)
    return server, agent


def wait_readyz(session: HostSession, wait_s: float) -> bool:
    """Poll the local API server's /readyz until it answers ok; False when it did not within wait_s."""
    result = session.run(f"""end=$(($(date +%s) + {int(wait_s)}))
until [ "$({KUBECTL} get --raw /readyz --request-timeout=5s 2>/dev/null)" = ok ]; do
  [ "$(date +%s)" -ge "$end" ] && exit 1; sleep 1
done
""")
    return result.code == 0


@dataclass(frozen=True)
class Snapshot:
    """What the first server reports in one round trip: nodes, the MetalLB pools (a list with no items before
    MetalLB is installed) and its kubeconfig."""
    nodes: dict[str, NodeState]
    pools: dict
    kubeconfig: str


def snapshot(session: HostSession) -> Snapshot:
    """Nodes, MetalLB pools and k3s.yaml from the first server in one command."""
    out = session.check(f"""kit_t=$(mktemp -d); trap 'rm -rf "$kit_t"' EXIT
{_START_SNAPSHOT}wait $kit_n || {{ cat "$kit_t/err" >&2; exit 1; }}
{_PRINT_SNAPSHOT}
""", "reading the cluster state")
    return _parse_snapshot(out)


def _parse_snapshot(text: str) -> Snapshot:
    state_json, kubeconfig = text.split(SEPARATOR + "\n")
    items = json.loads(state_json).get("items", [])
    pools = {"items": [item for item in items if item.get("kind") == "IPAddressPool"]}
    return Snapshot(_node_states([item for item in items if item.get("kind") == "Node"]), pools, kubeconfig)


@dataclass(frozen=True)
class Reading:
    """What the first server's probe read of its running cluster: the full tokens and a snapshot."""
    tokens: tuple[str, str]
    snapshot: Snapshot


def reading_scripts() -> tuple[str, str]:
    """Shell run before and after the first server's probe: when k3s is active and has written its tokens, the
    snapshot's kubectl calls start in the background first; at the end READING_MARK, the tokens and the snapshot
    follow the facts (nothing when k3s does not run or kubectl fails: the steps read them later)."""
    before = f"""if systemctl is-active {k3s.unit("server")} >/dev/null 2>&1 && [ -s {k3s.TOKEN_FILE} ] \\
    && [ -s {k3s.AGENT_TOKEN_FILE} ]; then
kit_t=$(mktemp -d); trap 'rm -rf "$kit_t"' EXIT
{_START_SNAPSHOT}fi
"""
    after = f"""if [ -n "${{kit_n:-}}" ] && wait $kit_n; then
  echo '{READING_MARK}'; {_PRINT_TOKENS}; echo '{SEPARATOR}'
{_PRINT_SNAPSHOT}
fi
"""
    return before, after


def parse_reading(session: HostSession, text: str) -> Reading | None:
    """The Reading printed after READING_MARK (None without one); its tokens join the session's secrets first,
    and the snapshot is redacted like any output."""
    if not text.strip():
        return None
    server, _, rest = text.partition(SEPARATOR)
    agent, _, snapshot_text = rest.partition(SEPARATOR + "\n")
    tokens = _tokens(session, f"{server}{SEPARATOR}{agent}")
    if not (ca_hash(tokens[0]) and ca_hash(tokens[1])):
        return None
    try:
        return Reading(tokens, _parse_snapshot(redact(snapshot_text, session.secrets)))
    except ValueError:  # output that does not parse: the steps read it again and report it
        return None


def nodes(session: HostSession) -> dict[str, NodeState]:
    """The cluster's nodes as the first server sees them."""
    return parse_nodes(session.check(f"{KUBECTL} get nodes -o json\n", "listing nodes"))


def parse_nodes(text: str) -> dict[str, NodeState]:
    return _node_states(json.loads(text).get("items", []))


def _node_states(items: list[dict]) -> dict[str, NodeState]:
    result = {}
    for item in items:
        conditions = item.get("status", {}).get("conditions", [])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        name = item["metadata"]["name"]
        spec = item.get("spec", {})
        result[name] = NodeState(name, ready, item.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", ""),
                                 item["metadata"].get("labels", {}), spec.get("taints", []),
                                 bool(spec.get("unschedulable")))
    return result


def wait_nodes_ready(session: HostSession, names: list[str], wait_s: float = 180,
                     interval: float = 1.0) -> dict[str, NodeState]:
    """Poll until every named node is Ready; return the last view (callers report the ones still not Ready)."""
    deadline = time.monotonic() + wait_s
    while True:
        seen = nodes(session)
        if all(name in seen and seen[name].ready for name in names) or time.monotonic() > deadline:
            return seen
        time.sleep(interval)


def not_ready_reason(name: str, seen: dict[str, NodeState]) -> str:
    if name not in seen:
        return f"node {name} never joined the cluster (check the k3s log on the host)"
    return f"node {name} is not Ready"


def wait_node_version(session: HostSession, name: str, version: str, wait_s: float,
                      interval: float = 1.0) -> NodeState | None:
    """Poll until the node is Ready and its kubelet reports `version`; the last view of it otherwise (None: no
    such node)."""
    deadline = time.monotonic() + wait_s
    while True:
        node = nodes(session).get(name)
        if (node is not None and node.ready and node.version == version) or time.monotonic() > deadline:
            return node
        time.sleep(interval)
