"""A host's own firewall read from its nftables ruleset (`nft -j list ruleset`): would a new connection from a peer
to a port be let in? ufw and firewalld on their nftables backends and iptables-nft rules all live in that ruleset.

The evaluation follows nftables' semantics for the input hook (wiki.nftables.org, "Configuring chains" and
"Jumping to chain"): every base chain on the hook runs in priority order, `accept` ends one base chain and the packet
goes on to the next, `drop` and `reject` are final, `jump` returns to the caller, `goto` does not, a base chain
that runs out of rules applies its policy. A match the kit cannot decide (an interface the probe did not find, a
rate limit, an xtables extension, a named set) is "unknown": the rule is reported as one that may decide, never
taken as a yes or a no."""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from edge_hosts.preflight.iptables import iptables_items

FAMILIES = ("ip", "inet")  # the node addresses are IPv4
NOT_VERDICTS = ("counter", "log", "comment", "notrack", "mangle", "quota")
MAX_DEPTH = 16  # the kernel refuses a ruleset whose jumps nest deeper than 15 (NFT_JUMP_STACK_SIZE; nft_chain_validate)


@dataclass(frozen=True)
class Packet:
    """A new connection (or first datagram) from a peer to one of this host's ports."""
    proto: str  # tcp | udp
    port: int
    source: ipaddress.IPv4Address
    destination: ipaddress.IPv4Address
    interface: str | None = None  # where peers' packets come in (the node subnet's route); None: not known


@dataclass
class Verdict:
    blocked_by: str | None = None  # the rule (or chain policy) that drops or rejects it
    unsure: list[str] = field(default_factory=list)  # rules not understood that might drop or reject it
    maybe_let_in: list[str] = field(default_factory=list)  # rules not understood that might accept it (or skip on)


class Ruleset:
    def __init__(self, document: dict):
        items = document.get("nftables", [])
        self.chains = {(c["family"], c["table"], c["name"]): c for c in (i["chain"] for i in items if "chain" in i)}
        self.rules: dict[tuple, list[dict]] = {}
        for rule in (i["rule"] for i in items if "rule" in i):
            self.rules.setdefault((rule["family"], rule["table"], rule["chain"]), []).append(rule)

    @classmethod
    def parse(cls, text: str, iptables_save: str = "") -> "Ruleset":
        """`nft -j list ruleset` output; empty text (no nft, or nothing loaded) is an empty ruleset. nft shows the
        matches of iptables-nft rules (ufw's conntrack, multiport, comment...) only as opaque `xt` expressions, so the
        tables `iptables-nft-save` prints replace their JSON form when it is given."""
        document = json.loads(text) if text.strip() else {}
        converted = iptables_items(iptables_save)
        if converted:
            tables = {(i["chain"]["family"], i["chain"]["table"]) for i in converted if "chain" in i}
            kept = [i for i in document.get("nftables", [])
                    if not any(k in i and (i[k]["family"], i[k]["table"]) in tables for k in ("chain", "rule"))]
            document = {"nftables": kept + converted}
        return cls(document)

    def input_chains(self) -> list[tuple]:
        hooked = [k for k, c in self.chains.items() if k[0] in FAMILIES and c.get("hook") == "input"]
        return sorted(hooked, key=lambda k: _priority(self.chains[k].get("prio", 0)))

    def verdict(self, packet: Packet) -> Verdict:
        result = Verdict()
        for key in self.input_chains():
            outcome = self._run(key, packet, result, 0)
            if outcome == "block" or (outcome is None and self.chains[key].get("policy") == "drop"):
                result.blocked_by = result.blocked_by or f"policy drop of chain {_name(key)}"
                return result
        return result

    def _run(self, key: tuple, packet: Packet, result: Verdict, depth: int) -> str | None:
        """'accept', 'block', or None when the chain ran out or returned."""
        if depth > MAX_DEPTH or key not in self.chains:
            result.unsure.append(f"chain {_name(key)} (missing or too deep)")
            return None
        for rule in self.rules.get(key, []):
            matched, action = _matches(rule["expr"], packet), _action(rule["expr"], packet)
            if matched is False or action is None:
                continue
            if matched is None:  # it may or may not apply: say so, and go on as if it did not
                blocking = action[0] in ("drop", "reject", "unknown")
                (result.unsure if blocking else result.maybe_let_in).append(describe(rule))
                continue
            verb, target = action
            if verb == "accept":
                return "accept"
            if verb in ("drop", "reject"):
                result.blocked_by = describe(rule)
                return "block"
            if verb == "return":
                return None
            if verb in ("jump", "goto"):
                outcome = self._run((key[0], key[1], target), packet, result, depth + 1)
                if outcome is not None or verb == "goto":
                    return outcome
                continue
            result.unsure.append(describe(rule))  # queue, an xtables target...
        return None


def _priority(prio) -> int:
    """A chain priority as nft prints it: a number or a standard name (filter 0, security 50, ...)."""
    names = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
    return prio if isinstance(prio, int) else names.get(str(prio), 0)


def _name(key: tuple) -> str:
    return " ".join(key)


def _verdict(kind: str, value) -> tuple[str, str | None] | None:
    if kind in ("accept", "drop", "reject", "return"):
        return kind, None
    if kind in ("jump", "goto"):
        return kind, value["target"]
    return None


def _action(exprs: list[dict], packet: Packet) -> tuple[str, str | None] | None:
    """The rule's verdict for the packet: (verb, jump target), or None for a rule that only counts or logs (or
    whose verdict map has no entry for it)."""
    for expr in exprs:
        (kind, value), = expr.items()
        if kind == "vmap":
            return _vmap(value, packet)
        if kind == "continue":
            return None
        if _verdict(kind, value):
            return _verdict(kind, value)
        if kind == "queue" or kind == "xt" and value.get("type") != "match":
            return "unknown", None
    return None


def _vmap(vmap: dict, packet: Packet) -> tuple[str, str | None] | None:
    """A verdict map (`tcp dport vmap { 22 : accept, 6443 : drop }`): the verdict of the entry its key holds, None
    when none does, unknown when that cannot be decided (an unknown key, a named map)."""
    value = _field(vmap["key"], packet)
    if value is _OTHER_PROTOCOL:
        return None
    data = vmap["data"]
    if value is _UNKNOWN or not isinstance(data, dict):
        return "unknown", None
    for key, verdict in data.get("set", []):
        hit = _contains(key, value)
        if hit is None:
            return "unknown", None
        if hit:
            (kind, target), = verdict.items()
            return _verdict(kind, target) or ("unknown", None)
    return None


def _matches(exprs: list[dict], packet: Packet) -> bool | None:
    """True when every match of the rule holds for the packet, False when one fails, None when one is not known."""
    known = True
    for expr in exprs:
        (kind, value), = expr.items()
        if kind == "match":
            outcome = _match(value, packet)
        elif kind in NOT_VERDICTS or kind in ("accept", "drop", "reject", "return", "continue", "jump", "goto", "vmap"):
            continue
        else:
            outcome = None  # limit, xt match, fib, set lookups the kit does not model...
        if outcome is False:
            return False
        if outcome is None:
            known = False
    return True if known else None


def _match(match: dict, packet: Packet) -> bool | None:
    value = _field(match["left"], packet)
    if value is _UNKNOWN:
        return None
    if value is _OTHER_PROTOCOL:
        return False  # `tcp dport 22` never matches a UDP packet, with == or !=
    hit = _contains(match["right"], value)
    if hit is None:
        return None
    op = match.get("op", "==")
    if op in ("==", "in"):
        return hit
    if op == "!=":
        return not hit
    return None


_UNKNOWN, _OTHER_PROTOCOL = object(), object()


def _field(left, packet: Packet):
    if not isinstance(left, dict):
        return _UNKNOWN
    if "payload" in left:
        proto, name = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("tcp", "udp", "th") and name == "dport":
            return packet.port if proto in (packet.proto, "th") else _OTHER_PROTOCOL
        if proto == "ip" and name in ("saddr", "daddr"):
            return packet.source if name == "saddr" else packet.destination
        if proto == "ip" and name == "protocol":
            return packet.proto
        return _UNKNOWN
    if "meta" in left:
        key = left["meta"].get("key")
        if key == "l4proto":
            return packet.proto
        if key == "nfproto":
            return "ipv4"
        if key in ("iif", "iifname"):  # nft prints an iif by its name too
            return _Interface(packet.interface)
        return _UNKNOWN
    if "ct" in left and left["ct"].get("key") == "state":
        return "new"
    return _UNKNOWN


@dataclass(frozen=True)
class _Interface:
    """The interface a peer's packet arrives on: never loopback; its name when the probe found it."""
    name: str | None


def _contains(right, value) -> bool | None:
    """Whether `value` is (in) the rule's right-hand side: a value, a set, a range or a prefix."""
    if isinstance(right, dict) and "set" in right:
        right = right["set"]
    if isinstance(right, list):
        hits = [_contains(item, value) for item in right]
        return True if True in hits else (None if None in hits else False)
    if isinstance(value, _Interface):
        if right == "lo" or value.name is None or not isinstance(right, str):
            return False if right == "lo" else None
        return value.name.startswith(right[:-1]) if right.endswith("*") else value.name == right
    if isinstance(right, str) and right.startswith("@"):
        return None  # a named set: its elements are not in the rule
    if isinstance(right, dict) and "range" in right:
        low, high = right["range"]
        return _compare(low, value) <= 0 <= _compare(high, value) if _comparable(low, value) else None
    if isinstance(right, dict) and "prefix" in right:
        if not isinstance(value, ipaddress.IPv4Address):
            return None
        prefix = right["prefix"]
        return value in ipaddress.ip_network(f"{prefix['addr']}/{prefix['len']}", strict=False)
    if isinstance(value, ipaddress.IPv4Address):
        try:
            return value == ipaddress.ip_address(right)
        except ValueError:
            return None
    if isinstance(right, dict):
        return None
    if value in ("tcp", "udp"):
        return right in (value, {"tcp": 6, "udp": 17}[value])
    if value == "new" and isinstance(right, str):
        return right == "new"
    return right == value


def _comparable(bound, value) -> bool:
    return isinstance(value, int) and isinstance(bound, int) or isinstance(value, ipaddress.IPv4Address)


def _compare(bound, value) -> int:
    """bound - value as a sign, for ports and addresses."""
    if isinstance(value, ipaddress.IPv4Address):
        bound = ipaddress.ip_address(bound)
    return (bound > value) - (bound < value)


def describe(rule: dict) -> str:
    """A rule as `nft -a list chain` shows it, closely enough to find it: its statements and its handle."""
    parts = []
    for expr in rule["expr"]:
        (kind, value), = expr.items()
        if kind == "match":
            op = "" if value.get("op") in ("==", "in") else f"{value.get('op')} "
            parts.append(f"{_left(value['left'])} {op}{_right(value['right'])}")
        elif kind in ("jump", "goto"):
            parts.append(f"{kind} {value['target']}")
        elif kind == "vmap":
            entries = value["data"].get("set", []) if isinstance(value["data"], dict) else []
            shown = ", ".join(f"{_right(k)} : {next(iter(v))}" for k, v in entries) if entries else value["data"]
            parts.append(f"{_left(value['key'])} vmap {{ {shown} }}")
        elif kind == "reject":
            parts.append("reject" + (f" with {value['type']}" if value and value.get("type") else ""))
        elif kind not in ("counter", "comment"):
            parts.append(kind)
    where = f"{rule['family']} {rule['table']} {rule['chain']}"
    handle = rule.get("handle", "?")
    if "text" in rule:  # an iptables-nft rule: as iptables-save prints it
        return f"`{rule['text']}` ({where}, {handle})"
    return f"`{' '.join(parts)}` ({where}, handle {handle})"


def _left(left) -> str:
    if isinstance(left, dict) and "payload" in left:
        return f"{left['payload'].get('protocol')} {left['payload'].get('field')}"
    if isinstance(left, dict) and len(left) == 1:
        (kind, value), = left.items()
        return f"{kind} {value.get('key', '')}".strip() if isinstance(value, dict) else kind
    return str(left)


def _right(right) -> str:
    if isinstance(right, dict) and "set" in right:
        return "{ " + ", ".join(_right(item) for item in right["set"]) + " }"
    if isinstance(right, dict) and "range" in right:
        return "-".join(str(v) for v in right["range"])
    if isinstance(right, dict) and "prefix" in right:
        return f"{right['prefix']['addr']}/{right['prefix']['len']}"
    if isinstance(right, list):
        return ",".join(str(v) for v in right)
    return str(right)
