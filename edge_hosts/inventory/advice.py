"""Site-wide warnings found offline from the inventory alone: pins past their end of support, an HA site without a
stable API endpoint, nodes MetalLB's speaker cannot run on."""
from __future__ import annotations

from datetime import date

from common import pins
from edge_hosts.inventory.model import Inventory

# metallb v0.16.1 config/manifests/metallb-native.yaml, DaemonSet speaker: the only tolerations it has (all Exists)
SPEAKER_TOLERATIONS = (("node-role.kubernetes.io/master", "NoSchedule"),
                       ("node-role.kubernetes.io/control-plane", "NoSchedule"))
# what the DaemonSet controller adds to every daemon pod (kubernetes pkg/controller/daemon/util,
# AddOrUpdateDaemonPodTolerations; network-unavailable for host-network pods such as the speaker)
DAEMON_TOLERATIONS = (("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
                      *((f"node.kubernetes.io/{name}", "NoSchedule") for name in
                        ("disk-pressure", "memory-pressure", "pid-pressure", "unschedulable", "network-unavailable")))
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


def taint_parts(taint: str) -> tuple[str, str]:
    """(key, effect) of a k3s node-taint 'key=value:Effect' or 'key:Effect'."""
    spec, _, effect = taint.rpartition(":")
    return spec.split("=", 1)[0], effect


def speakerless(inventory: Inventory) -> dict[str, list[str]]:
    """Hosts whose taints keep MetalLB's speaker off (so they cannot announce L2 addresses), with those taints."""
    blocked = {}
    for host in inventory.hosts:
        taints = [t for t in host.taints if taint_parts(t)[1] in BLOCKING_EFFECTS
                  and taint_parts(t) not in SPEAKER_TOLERATIONS + DAEMON_TOLERATIONS]
        if taints:
            blocked[host.name] = taints
    return blocked


def speaker_tolerations(inventory: Inventory) -> list[dict]:
    """Tolerations added to the speaker with metallb.speakerOnTaintedNodes: one per taint it does not tolerate."""
    if not inventory.metallb.speaker_on_tainted_nodes:
        return []
    pairs = sorted({taint_parts(t) for taints in speakerless(inventory).values() for t in taints})
    return [{"key": key, "operator": "Exists", "effect": effect} for key, effect in pairs]


def site_warnings(inventory: Inventory, today: date) -> list[str]:
    notes = pins.warnings({"k3s": inventory.k3s.version, "metallb": inventory.metallb.version}, today)
    if len(inventory.servers) > 1 and not inventory.api_endpoint:
        notes.append(f"{len(inventory.servers)} servers but no apiEndpoint: joins and the kubeconfig use "
                     f"{inventory.first_server.name} alone; set apiEndpoint to a DNS name or VIP of all servers")
    blocked = {} if inventory.metallb.speaker_on_tainted_nodes else speakerless(inventory)
    for name, taints in blocked.items():
        notes.append(f"metallb: no speaker on {name} (taint {', '.join(taints)} is not tolerated by the speaker): "
                     f"it cannot announce LoadBalancer addresses (metallb.speakerOnTaintedNodes: true changes that)")
    if blocked and len(blocked) == len(inventory.hosts):
        notes.append("metallb: no node can run a speaker: LoadBalancer addresses will not be reachable")
    return notes
