"""Preflight: what keeps a host from running k3s, found from its probe alone (nothing on the host is changed).

Besides the host's own shape (arch, SELinux, root, route, cgroups, disk, ports) it checks what a real plant gets
wrong: the clock (a Raspberry Pi has no real-time clock, and a skewed clock breaks TLS), time sync, the host's own
firewall on the k3s and MetalLB ports, br_netfilter, and whether a joiner reaches the API endpoint on 6443."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable

from common import k3s
from edge_hosts.preflight.firewall import Packet, Ruleset
from edge_hosts.inventory.model import ARCH_ALIASES, Host, Inventory
from edge_hosts.facts.probe import REACH_TIMEOUT_S, TIME_SYNC_UNITS, Facts, reach_targets
from edge_hosts.engine.context import HostContext

if TYPE_CHECKING:
    from edge_hosts.engine.fanout import Engine

MIN_DISK_KB = 2 * 1024 * 1024
MODULES_FILE = "/etc/modules-load.d/90-mlops-edge-kit.conf"


def arch_problem(host: Host, facts: Facts) -> str | None:
    """The host's architecture against the inventory's, a 64-bit kernel on a 32-bit userland named as such."""
    kernel = facts["arch"]
    if kernel == "aarch64" and (facts["long_bit"] == "32" or facts["dpkg_arch"] in ("armhf", "armel")):
        if host.arch == "armv7":
            return None  # 32-bit binaries (k3s-armhf) run on this kernel; nodes report kubernetes.io/arch=arm
        return (f"64-bit kernel (uname -m aarch64) on a 32-bit userland (getconf LONG_BIT {facts['long_bit'] or '?'}, "
                f"dpkg {facts['dpkg_arch'] or '?'}): the inventory says {host.arch}; set arch: armv7 for this "
                f"userland or install a 64-bit OS")
    if ARCH_ALIASES.get(kernel) != host.arch:
        return f"arch is {kernel}, the inventory says {host.arch} ({host.uname_arch})"
    return None


def selinux_problem(ctx: HostContext, facts: Facts) -> str | None:
    """k3s under an enforcing SELinux needs the k3s-selinux policy (install.sh skips it for air-gapped installs)
    and `selinux: true`; the kit does not install policy packages, it refuses until both are there."""
    if facts["selinux"] != "enforcing":
        return None
    k3s_settings = ctx.inventory.k3s
    role_config = k3s_settings.server_config if ctx.host.role == "server" else k3s_settings.agent_config
    if facts.yes("selinux_policy") and {**k3s_settings.node_config, **role_config}.get("selinux") is True:
        return None
    return ("SELinux is enforcing: install the container-selinux and k3s-selinux packages on the host and set "
            "`selinux: true` in k3s.nodeConfig (or make SELinux permissive); the kit does not install SELinux policies")


def preflight_problems(ctx: HostContext, facts: Facts) -> list[str]:
    """What keeps this host from running k3s; its warnings (time sync, ports that only some features need, rules
    the kit cannot evaluate) go to stderr, once per probe."""
    problems = [p for p in (arch_problem(ctx.host, facts), selinux_problem(ctx, facts), clock_problem(ctx, facts),
                            br_netfilter_problem(facts)) if p]
    if facts["uid"] != "0":
        problems.append("commands do not run as root (sudo)")
    if not facts.yes("route"):
        problems.append("no default route (k3s needs one, even air-gapped)")
    if not facts.yes("cgroup_memory") and "Raspberry Pi" not in facts["pi_model"]:
        problems.append("the cgroup memory controller is not enabled")
    if facts["disk_kb"].isdigit() and int(facts["disk_kb"]) < MIN_DISK_KB:
        problems.append(f"only {int(facts['disk_kb']) // 1024} MiB free under /var/lib/rancher (need 2048)")
    busy = facts.busy_ports()
    if busy and not facts.yes("active"):
        problems.append(f"ports {', '.join(map(str, busy))} are in use by another program")
    blocked, doubts = firewall_findings(ctx.inventory, ctx.host, facts)
    unreachable, untested = reach_findings(ctx.inventory, ctx.host, facts)
    problems += blocked + unreachable
    _show_once(ctx.host, facts, [*time_sync_warnings(facts), *doubts, *untested, *br_netfilter_notes(facts)])
    return problems


def _show_once(host: Host, facts: Facts, notes: list[str]) -> None:
    if not facts.warned:
        sys.stderr.write("".join(f"warning: {host.name}: {note}\n" for note in notes))
        facts.warned = True


# -- the clock ------------------------------------------------------------------------------------------------------
def clock_offset(facts: Facts) -> tuple[float, float] | None:
    """The lowest and highest offset of the host's clock from this machine's that the probe's timing allows: the
    host read its clock (clock_start) after this machine sent the probe and at least the script's own run time
    (clock_end - clock_start) before the reply came back, so neither link latency nor the script counts as skew."""
    start, slack = _seconds(facts["clock_start"])
    end, _ = _seconds(facts["clock_end"])
    if start is None or not facts["clock_sent"]:
        return None
    sent, received = float(facts["clock_sent"]), float(facts["clock_received"])
    ran = max(0.0, end - start) if end is not None else 0.0
    return start - max(sent, received - ran), start + slack - sent


def _seconds(text: str) -> tuple[float | None, float]:
    """`date +%s.%N` as seconds, with its uncertainty (a date without %N prints the literal: whole seconds)."""
    whole, _, fraction = text.partition(".")
    if not whole.isdigit():
        return None, 0.0
    return (float(text), 0.0) if fraction.isdigit() else (float(whole), 1.0)


def clock_problem(ctx: HostContext, facts: Facts) -> str | None:
    """A clock off by more than preflight.maxClockSkew whatever the link did (the whole measured range is past it)."""
    offset = clock_offset(facts)
    limit = ctx.inventory.preflight.max_clock_skew
    if offset is None or offset[0] <= limit and offset[1] >= -limit:
        return None
    low, high = offset
    middle, spread = (low + high) / 2, (high - low) / 2
    side = "ahead of" if middle > 0 else "behind"
    return (f"the clock is {abs(middle):.1f} s {side} this machine's (±{spread:.2f} s, measured around the probe's "
            f"round trip; preflight.maxClockSkew is {limit:g} s): TLS certificates and etcd need clocks that agree. "
            f"Set the time and enable time sync (systemd-timesyncd or chrony with a server the plant reaches), or "
            f"check this machine's clock if every host is off by the same")


def time_sync_warnings(facts: Facts) -> list[str]:
    """No time-sync service, or one that has not synchronized (timedatectl's NTPSynchronized, where there is one)."""
    if facts.yes("ntp_synchronized") or "time_sync" not in facts.values:
        return []
    states = dict(zip(TIME_SYNC_UNITS, facts["time_sync"].split()))
    active = [unit for unit, state in states.items() if state == "active"]
    if not active:
        return [f"no time-sync service is active ({', '.join(TIME_SYNC_UNITS)}): a Raspberry Pi has no real-time "
                f"clock and starts at its last saved time after a power cut; enable systemd-timesyncd or chrony"]
    if facts["ntp_synchronized"] == "no":
        return [f"{active[0]} is active but the clock is not synchronized (timedatectl NTPSynchronized=no): can it "
                f"reach its time servers from the plant network?"]
    return []


# -- br_netfilter -------------------------------------------------------------------------------------------------
def br_netfilter_problem(facts: Facts) -> str | None:
    """k3s modprobes br_netfilter at start and only logs a warning when that fails (k3s-io/k3s
    pkg/agent/syssetup/setup.go at 00014d2, loadKernelModule); flannel's bridged pod traffic then bypasses iptables.
    A kernel without the module is refused here."""
    if facts["br_netfilter"] != "missing":
        return None
    return ("br_netfilter is not loaded and this kernel has no such module (modprobe -n br_netfilter fails): k3s "
            "needs it for bridged pod traffic; install the kernel's extra modules (e.g. linux-modules-extra-$(uname "
            "-r) on Ubuntu, kernel-modules-extra on RHEL)")


def br_netfilter_notes(facts: Facts) -> list[str]:
    """A module that is not loaded yet is worth a line (a loaded one is only listed in /etc/modules-load.d)."""
    if facts["br_netfilter"] == "loadable":
        return [f"br_netfilter is not loaded: os-prep loads it and lists it in {MODULES_FILE}"]
    return []


def br_netfilter_script(facts: Facts) -> str | None:
    """What os-prep runs so br_netfilter is loaded now and at every boot (systemd-modules-load), or None."""
    state = facts["br_netfilter"]
    if state not in ("loaded", "loadable") or (state == "loaded" and facts.yes("br_netfilter_persisted")):
        return None
    load = "modprobe br_netfilter\n" if state == "loadable" else ""
    return f"set -e\nmkdir -p /etc/modules-load.d\necho br_netfilter > {MODULES_FILE}\n{load}"


# -- the host's firewall ------------------------------------------------------------------------------------------
# docs.k3s.io/installation/requirements ("Inbound Rules for K3s Nodes", k3s-io/docs at 005d295) and MetalLB v0.16.1
# metallb-native.yaml (speaker containerPorts memberlist-tcp/udp 7946, host network): (proto, port, to, from, what,
# whether k3s fails without it)
PORTS = (("tcp", 6443, "server", "all", "the k3s supervisor and API server", True),
         ("tcp", 2379, "server", "server", "etcd clients (HA with embedded etcd)", True),
         ("tcp", 2380, "server", "server", "etcd peers (HA with embedded etcd)", True),
         ("udp", 8472, "all", "all", "flannel VXLAN", True),
         ("tcp", 10250, "all", "all", "the kubelet (metrics, logs, exec)", False),
         ("tcp", 7946, "all", "all", "MetalLB memberlist", False),
         ("udp", 7946, "all", "all", "MetalLB memberlist", False),
         # docs.k3s.io/installation/registry-mirror: with the embedded mirror every node reaches the others on 5001
         # (Spegel's peer-to-peer); without it pulls take longer (containerd tries the mirror first), nothing fails
         ("tcp", 5001, "all", "all", "the embedded registry mirror's peer-to-peer network", False))


def needed_ports(inventory: Inventory, host: Host) -> list[tuple[str, int, list[Host], str, bool]]:
    """The ports this host must let its peers reach, each with the peers that use it."""
    wanted = []
    for proto, port, to, source, what, required in PORTS:
        if to == "server" and host.role != "server" or port in (2379, 2380) and len(inventory.servers) < 2:
            continue
        if port == 5001 and not (inventory.registries and inventory.registries.embedded_mirror):
            continue
        peers = [h for h in (inventory.servers if source == "server" else inventory.hosts) if h != host]
        if peers:
            wanted.append((proto, port, peers, what, required))
    return wanted


def firewall_findings(inventory: Inventory, host: Host, facts: Facts) -> tuple[list[str], list[str]]:
    """Problems (a needed port the host's nftables ruleset drops or rejects) and warnings (ports only some features
    need, rules the kit cannot evaluate, firewall tools without nft to read their rules). The probe reads the
    ruleset while k3s does not run on the host (a running node's is mostly k3s's own). The kit does not open ports:
    a plant's host firewall belongs to its IT; each problem names the rule and how to open the port."""
    if "nft_ruleset" not in facts.values:
        tools = facts["firewall_tools"].split()
        return [], ([f"{', '.join(tools)} present but no nft command: the host firewall was not checked "
                     f"(install nftables so preflight can read the ruleset)"] if tools else [])
    try:
        ruleset = Ruleset.parse(facts["nft_ruleset"], facts["iptables_save"])
    except ValueError:
        return [], ["`nft -j list ruleset` failed: the host firewall was not checked"]
    problems, warnings = [], []
    for proto, port, peers, what, required in needed_ports(inventory, host):
        verdicts = {peer.name: ruleset.verdict(Packet(proto, port, peer.address, host.address,
                                                      facts["peer_iface"] or None)) for peer in peers}
        blocked = {name: v.blocked_by for name, v in verdicts.items() if v.blocked_by}
        doubts = sorted({r for v in verdicts.values() for r in (v.maybe_let_in if v.blocked_by else v.unsure)})
        if blocked:
            rule = next(iter(blocked.values()))
            text = (f"the host firewall blocks {port}/{proto} ({what}) from {', '.join(blocked)}: {rule}; "
                    f"{_how_to_open(rule, proto, port, inventory)}")
            if doubts:  # an earlier rule the kit cannot evaluate may let it in: not a certain failure
                warnings.append(f"{text} (unless {'; '.join(doubts)} lets it in: the kit cannot evaluate it)")
            else:
                (problems if required else warnings).append(text)
        elif doubts:
            warnings.append(f"the host firewall may block {port}/{proto} ({what}): the kit cannot evaluate "
                            f"{'; '.join(doubts)}")
    return problems, warnings + _legacy_warnings(facts)


def _legacy_warnings(facts: Facts) -> list[str]:
    """iptables-legacy rules live outside the nftables ruleset: counted by the probe, not evaluated."""
    count = facts["iptables_legacy_rules"]
    if not count.isdigit() or count == "0":
        return []
    return [f"{count} iptables-legacy rules or DROP policies (iptables-legacy-save) are outside the nftables ruleset "
            f"and were not checked: make sure they let the site's hosts reach 6443/tcp, 8472/udp and 10250/tcp"]


def _how_to_open(rule: str, proto: str, port: int, inventory: Inventory) -> str:
    subnet = inventory.node_subnet
    if "firewalld" in rule:
        return (f"open it with `firewall-cmd --permanent --add-rich-rule='rule family=ipv4 source address={subnet} "
                f"port port={port} protocol={proto} accept'` and `firewall-cmd --reload`")
    if "ufw" in rule:
        return f"open it with `ufw allow from {subnet} to any port {port} proto {proto}`"
    return f"add an nftables rule accepting {proto} dport {port} from {subnet} before it (and persist it)"


# -- reaching the API endpoint ---------------------------------------------------------------------------------------
def reach_findings(inventory: Inventory, host: Host, facts: Facts) -> tuple[list[str], list[str]]:
    """A joiner that cannot open a TCP connection to the API endpoint on 6443 (probed from the joiner itself, before
    it runs k3s), and warnings where it could not try. A refused connection counts as reached: the server's kernel
    answered, nothing listens there yet; a firewall that rejects with a TCP reset looks the same, which is why the
    servers' own rulesets are read too. UDP (flannel's 8472) has no handshake, so it is not probed end to end: a
    datagram that gets through is not acknowledged and one that is dropped is silent. It is checked in every peer's
    own firewall rules instead."""
    problems, warnings = [], []
    for target in reach_targets(inventory, host):
        answer = facts[f"reach {target}:{k3s.API_PORT}"]
        code, _, message = answer.partition(" ")
        where = f"the API endpoint {target}:{k3s.API_PORT}/tcp"
        if not answer or code == "0" or "refused" in message.lower():
            continue
        if code == "127":
            warnings.append(f"{where} was not tried: the host has no bash or timeout command to connect with")
        elif code == "124":
            problems.append(f"cannot reach {where} (no answer within {REACH_TIMEOUT_S} s: a firewall on the way or "
                            f"on the server drops it)")
        else:
            problems.append(f"cannot reach {where} ({message or f'exit {code}'})")
    return problems, warnings


# -- site-wide ---------------------------------------------------------------------------------------------------
def hold_site(engine: Engine, contexts: list[HostContext], step: Callable[[HostContext], bool]) -> None:
    """Preflight on every host before any is changed: a server that fails it (a firewall on 6443, a skewed clock)
    holds every host back, so nothing is installed anywhere while the cluster's servers cannot run."""
    engine.each(contexts, lambda ctx: engine.step(ctx, "preflight", step))
    failed = [c.host.name for c in contexts if c.host.role == "server" and (c.error or "").startswith("preflight:")]
    for ctx in contexts if failed else []:
        engine.fail(ctx, f"preflight: server {', '.join(failed)} failed preflight; nothing is installed on any host "
                         f"until it passes")
