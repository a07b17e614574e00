"""Can each edge agent pool schedule? Its architecture needs a node in the site's inventory it may run on.

The inventory (edge_hosts/sites/<site>.yaml) is read as plain YAML: only each host's `arch` and `taints`
matter here. A node takes a pool's pods when every NoSchedule/NoExecute taint it carries is tolerated by
the pool (`tolerate`); PreferNoSchedule only steers the scheduler. A k3s server without taints schedules
pods like any node (k3s taints servers only when told to, with node-taint).
"""
from pathlib import Path

import yaml

from agents.settings import AgentsSettings, ArchPool
from common import yamlio

SITES_DIR = Path(__file__).resolve().parents[1] / "edge_hosts" / "sites"
# What inventories and hosts call an architecture -> the Kubernetes architecture (kubernetes.io/arch).
KUBERNETES_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                   "armv7": "arm", "armv7l": "arm", "armhf": "arm", "arm": "arm"}
BLOCKING = ("NoSchedule", "NoExecute")

Violation = tuple[str, str]  # (key path, problem)


def tolerated(taint: str, tolerations: list[str]) -> bool:
    """Whether `taint` (key=value:Effect) is tolerated by one of `tolerations` (same syntax; key:Effect = any value)."""
    key_value, _, effect = taint.rpartition(":")
    key = key_value.partition("=")[0]
    return taint in tolerations or f"{key}:{effect}" in tolerations


def node_taints(host: dict, k3s: dict) -> list[str]:
    """The taints a host's node carries: its own, and any node-taint from the k3s config for its role."""
    role_config = k3s.get("serverConfig" if host.get("role") == "server" else "agentConfig") or {}
    extra = [*((k3s.get("nodeConfig") or {}).get("node-taint") or []), *(role_config.get("node-taint") or [])]
    return [str(t) for t in [*(host.get("taints") or []), *extra]]


def schedulable_hosts(inventory: dict, pool: ArchPool) -> list[str]:
    """Names of the hosts whose node would take this pool's pods."""
    k3s = inventory.get("k3s") or {}
    return [str(host.get("name")) for host in inventory.get("hosts") or []
            if isinstance(host, dict) and KUBERNETES_ARCH.get(str(host.get("arch"))) == pool.arch
            and all(tolerated(t, pool.tolerate) for t in node_taints(host, k3s) if t.rpartition(":")[2] in BLOCKING)]


def read_inventory(path: Path) -> dict | str:
    """The inventory mapping, or what is wrong with the file."""
    try:
        document = yamlio.load(path.read_text(), str(path))
    except FileNotFoundError:
        return "does not exist"
    except yaml.YAMLError as err:
        return f"is not valid YAML ({' '.join(str(err).split())})"
    return document if isinstance(document, dict) else "is not a mapping"


def unschedulable_pools(agents: AgentsSettings, sites_dir: Path = SITES_DIR) -> list[Violation]:
    """Every edge pool that no node of its site's inventory would run, naming the key and the inventory."""
    if not agents.enabled:
        return []
    problems = []
    for i, site in enumerate(agents.edge_sites):
        path = sites_dir / f"{site.name}.yaml"
        shown = f"{sites_dir.parent.name}/{sites_dir.name}/{path.name}"
        inventory = read_inventory(path)
        if isinstance(inventory, str):
            problems.append((f"agents.edgeSites[{i}].name", f"the inventory {shown} of site {site.name} {inventory}"))
            continue
        for j, pool in enumerate(site.pools):
            if schedulable_hosts(inventory, pool):
                continue
            hosts = [h for h in inventory.get("hosts") or [] if isinstance(h, dict)]
            same_arch = [str(h.get("name")) for h in hosts if KUBERNETES_ARCH.get(str(h.get("arch"))) == pool.arch]
            archs = ", ".join(sorted({str(h.get("arch")) for h in hosts})) or "none"
            why = (f"every {pool.arch} host of {shown} ({', '.join(same_arch)}) carries a taint the pool does not "
                   f"tolerate (list it under tolerate)" if same_arch else
                   f"no host of {shown} is {pool.arch} (hosts[].arch there: {archs})")
            problems.append((f"agents.edgeSites[{i}].pools[{j}]",
                             f"pool {pool.pool_name} ({pool.arch}) can never schedule: {why}"))
    return problems
