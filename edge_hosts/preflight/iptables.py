"""iptables-nft rules read from `iptables-nft-save` (the nf_tables variant's; a legacy save is never taken for the
nftables ruleset) as items in `nft -j`'s shape, so the firewall evaluation reads them like any nftables rule:
the built-in chains' hooks and priorities as nftables registers iptables' tables."""
from __future__ import annotations

import shlex


# -- iptables-nft rules, from `iptables-nft-save` ------------------------------------------------------------------
# the built-in chains' hooks and priorities (iptables' tables as nftables registers them)
IPTABLES_INPUT_PRIORITY = {"mangle": -150, "filter": 0, "security": 50, "nat": 100}

IPTABLES_VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject", "RETURN": "return"}

NON_TERMINATING = ("LOG", "NFLOG", "MARK", "CONNMARK", "CT", "NOTRACK", "TRACE", "AUDIT")


def iptables_items(text: str) -> list[dict]:
    """`iptables-nft-save` output (an nf_tables variant's, never the legacy one's: those rules are not in the
    nftables ruleset) as items in `nft -j`'s shape; [] when there is none or it is not the nf_tables variant."""
    lines = text.splitlines()
    if not lines or "(nf_tables)" not in lines[0]:
        return []
    items, table, count = [], "", {}
    for line in lines:
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            base = ({"type": "filter", "hook": "input", "prio": IPTABLES_INPUT_PRIORITY[table],
                     "policy": policy.lower()} if name == "INPUT" and table in IPTABLES_INPUT_PRIORITY else {})
            items.append({"chain": {"family": "ip", "table": table, "name": name, **base}})
        elif line.startswith("-A "):
            words = shlex.split(line)
            count[table, words[1]] = count.get((table, words[1]), 0) + 1  # as iptables -L --line-numbers counts
            items.append({"rule": {"family": "ip", "table": table, "chain": words[1], "text": line,
                                   "handle": f"iptables -t {table} rule {count[table, words[1]]}",
                                   "expr": _iptables_exprs(words[2:])}})
    return items


def _iptables_exprs(words: list[str]) -> list[dict]:
    """One iptables rule's options as nft expressions; an option the kit does not model is an opaque `xt` match."""
    exprs, proto, negate, i = [], "th", False, 0
    while i < len(words):
        word = words[i]
        if word == "!":
            negate, i = True, i + 1
            continue
        value = words[i + 1] if i + 1 < len(words) else ""
        op, negate, i = "!=" if negate else "==", False, i + 2
        if word in ("-p", "--protocol"):
            proto = value if value in ("tcp", "udp") else "th"
            exprs.append({"match": {"op": op, "left": {"meta": {"key": "l4proto"}}, "right": value}})
        elif word in ("-s", "--source", "-d", "--destination"):
            left = {"payload": {"protocol": "ip", "field": "saddr" if word in ("-s", "--source") else "daddr"}}
            exprs.append({"match": {"op": op, **_iptables_address(left, value)}})
        elif word in ("-i", "--in-interface"):
            name = value[:-1] + "*" if value.endswith("+") else value
            exprs.append({"match": {"op": op, "left": {"meta": {"key": "iifname"}}, "right": name}})
        elif word in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            ports = [_iptables_port(p) for p in value.split(",")]
            exprs.append({"match": {"op": op, "left": {"payload": {"protocol": proto, "field": "dport"}},
                                    "right": ports[0] if len(ports) == 1 else {"set": ports}}})
        elif word in ("--ctstate", "--state"):
            exprs.append({"match": {"op": op, "left": {"ct": {"key": "state"}},
                                    "right": [state.lower() for state in value.split(",")]}})
        elif word in ("-j", "--jump", "-g", "--goto"):
            exprs += _iptables_target(word, value)
        elif word in ("-m", "--match", "--comment", "--reject-with", "--log-prefix", "--log-level"):
            continue  # a module name (its options follow) or a target's option: no match of its own
        else:
            exprs.append({"xt": {"type": "match", "name": word.lstrip("-")}})
            i -= 1  # only the option itself is known to be consumed: skip its values, if any
            while i < len(words) and not words[i].startswith("-") and words[i] != "!":
                i += 1
    return exprs


def _iptables_target(word: str, target: str) -> list[dict]:
    if target in IPTABLES_VERDICTS:
        return [{IPTABLES_VERDICTS[target]: None}]
    if target in NON_TERMINATING:
        return []
    if target.isupper() and word in ("-j", "--jump"):  # DNAT, TPROXY... an extension target
        return [{"xt": {"type": "target", "name": target}}]
    return [{"goto" if word in ("-g", "--goto") else "jump": {"target": target}}]


def _iptables_address(left: dict, value: str) -> dict:
    """`-s`/`-d` as nft -j shows the rule: an address, a prefix, or for a non-contiguous mask (iptables-save prints
    it dotted, `10.0.0.0/255.0.255.0`) the masked field `{"&": [field, mask]}` compared with the address."""
    address, _, mask = value.partition("/")
    if mask and not mask.isdigit():
        return {"left": {"&": [left, mask]}, "right": address}
    right = {"prefix": {"addr": address, "len": int(mask)}} if mask and mask != "32" else address
    return {"left": left, "right": right}


def _iptables_port(value: str):
    low, _, high = value.partition(":")
    return {"range": [int(low), int(high)]} if high else int(low)
