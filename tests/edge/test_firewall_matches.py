"""The firewall evaluation one match at a time (what `./kit mutate` found untested): every left-hand side the kit
reads (ports per protocol, addresses, the protocol, the interface, conntrack state), every right-hand form (value,
set, range, prefix, name, wildcard, named set), base-chain priorities by name, and the rule text shown to users; then
how rules and chains run (the first drop wins and ends the evaluation, a rule the kit cannot decide neither stops its
chain nor hides a possible drop, statements before matches, the kernel's jump depth, queues) and nftables tables kept
beside iptables-nft ones. Shapes are as nft 1.0.6 `-j list ruleset` prints them."""
import json

import pytest

from edge_hosts.preflight.firewall import Packet, Ruleset, Verdict, describe
from test_edge_preflight import PEER, SADDR, SELF, chain, dport, match, rule

DADDR = {"payload": {"protocol": "ip", "field": "daddr"}}
IIFNAME, L4PROTO = {"meta": {"key": "iifname"}}, {"meta": {"key": "l4proto"}}
IP_PROTOCOL, CT_STATE = {"payload": {"protocol": "ip", "field": "protocol"}}, {"ct": {"key": "state"}}
IIF, NFPROTO = {"meta": {"key": "iif"}}, {"meta": {"key": "nfproto"}}
PACKET = Packet("tcp", 6443, PEER, SELF, "eth0")  # from 10.9.0.12 to 10.9.0.11:6443 over eth0


def dropping(*matches, packet=PACKET):
    """The verdict on `packet` of an accept-policy input chain whose one rule drops what `matches` match."""
    items = [chain("input", "input"), rule("input", 7, *matches, {"drop": None})]
    return Ruleset({"nftables": items}).verdict(packet)


@pytest.mark.parametrize(("left", "right", "op", "blocked"), [
    (dport("tcp"), 6443, "==", True), (dport("tcp"), 22, "==", False), (dport("tcp"), 22, "!=", True),
    (dport("tcp"), 6443, "!=", False), (dport("udp"), 6443, "==", False), (dport("udp"), 22, "!=", False),
    (dport("th"), 6443, "==", True), (dport("tcp"), {"set": [22, 6443]}, "==", True),
    (dport("tcp"), {"set": [22, 80]}, "==", False), (dport("tcp"), [22, 6443], "in", True),
    (dport("tcp"), {"range": [6443, 7000]}, "==", True), (dport("tcp"), {"range": [6000, 6443]}, "==", True),
    (dport("tcp"), {"range": [6444, 7000]}, "==", False), (dport("tcp"), {"range": [6000, 6442]}, "==", False),
    (SADDR, "10.9.0.12", "==", True), (SADDR, "10.9.0.13", "==", False), (DADDR, "10.9.0.11", "==", True),
    (DADDR, "10.9.0.12", "==", False), (SADDR, {"prefix": {"addr": "10.9.0.0", "len": 28}}, "==", True),
    (SADDR, {"prefix": {"addr": "10.9.0.16", "len": 28}}, "==", False),
    (SADDR, {"range": ["10.9.0.12", "10.9.0.20"]}, "==", True), (SADDR, {"range": ["10.9.0.1", "10.9.0.12"]}, "==", True),
    (SADDR, {"range": ["10.9.0.13", "10.9.0.20"]}, "==", False),
    (IIFNAME, "eth0", "==", True), (IIFNAME, "eth*", "==", True), (IIFNAME, "et*", "==", True),
    (IIFNAME, "eth1", "==", False), (IIFNAME, "wl*", "==", False), (IIFNAME, "lo", "==", False),
    (IIFNAME, "lo", "!=", True), (L4PROTO, "tcp", "==", True), (L4PROTO, 6, "==", True), (L4PROTO, "udp", "==", False),
    (L4PROTO, 17, "==", False), (IP_PROTOCOL, "tcp", "==", True), (IP_PROTOCOL, {"set": ["udp", "tcp"]}, "==", True),
    (CT_STATE, "new", "==", True), (CT_STATE, ["established", "related"], "==", False),
    (CT_STATE, "established", "!=", True), (IIFNAME, "eth1*", "==", False), (IIF, "eth0", "==", True),
    (IIF, "eth1", "==", False), (IIF, "lo", "==", False), (NFPROTO, "ipv4", "==", True),
    (NFPROTO, "ipv6", "==", False),
])
def test_each_match_form_decides_as_nftables_would(left, right, op, blocked):
    outcome = dropping(match(left, right, op))
    assert (outcome.blocked_by is not None, outcome.unsure) == (blocked, [])


def test_a_udp_packet_is_matched_by_udp_and_th_ports_and_its_protocol():
    datagram = Packet("udp", 8472, PEER, SELF, "eth0")
    assert dropping(match(dport("udp"), 8472), packet=datagram).blocked_by is not None
    assert dropping(match(dport("th"), 8472), packet=datagram).blocked_by is not None
    assert dropping(match(dport("tcp"), 8472), packet=datagram).blocked_by is None
    assert dropping(match(L4PROTO, 17), packet=datagram).blocked_by is not None
    assert dropping(match(L4PROTO, "tcp"), packet=datagram).blocked_by is None


@pytest.mark.parametrize(("left", "right", "op"), [
    ({"meta": {"key": "mark"}}, 1, "=="), ({"payload": {"protocol": "tcp", "field": "sport"}}, 1024, "=="),
    ({"payload": {"protocol": "ip6", "field": "saddr"}}, "::1", "=="), (dport("tcp"), "@k3s-ports", "=="),
    (SADDR, "not-an-address", "=="), (SADDR, {"concat": [1, 2]}, "=="), ("not-a-dict", 1, "=="),
    (dport("tcp"), 6443, "<"), (dport("tcp"), {"range": ["a", "b"]}, "=="),
    (dport("tcp"), {"prefix": {"addr": "10.0.0.0", "len": 8}}, "=="),
    (dport("tcp"), {"set": [22, "@more"]}, "=="),
    # as nft 1.0.6 -j prints `ip ttl 64`, `ct mark 1`, `fib daddr type local`, `ip saddr . tcp dport { ... }`
    ({"payload": {"protocol": "ip", "field": "ttl"}}, 64, "=="), ({"ct": {"key": "mark"}}, 1, "=="),
    ({"fib": {"result": "type", "flags": ["daddr"]}}, "local", "=="),
    ({"concat": [SADDR, dport("tcp")]}, {"set": [{"concat": ["10.9.0.12", 6443]}]}, "=="),
])
def test_a_match_the_kit_cannot_decide_is_reported_as_unsure_never_taken(left, right, op):
    outcome = dropping(match(left, right, op))
    assert outcome.blocked_by is None and outcome.unsure == [describe(rule("input", 7, match(left, right, op),
                                                                          {"drop": None})["rule"])]


def test_an_interface_match_is_unsure_until_the_probe_found_the_peers_interface():
    unknown = Packet("tcp", 6443, PEER, SELF, None)
    assert dropping(match(IIFNAME, "eth0"), packet=unknown).unsure != []
    assert dropping(match(IIFNAME, "lo"), packet=unknown).unsure == []  # peers never come in on loopback
    assert dropping(match(IIFNAME, 3), packet=PACKET).unsure != []      # an index, not a name


def test_base_chains_run_in_the_order_of_their_priorities_by_number_or_by_name():
    prios = ["srcnat", 75, "security", 25, "filter", -120, "mangle", -200, "raw", "dstnat", -101, -99, "unknown"]
    items = [chain(f"c{i}", "input", prio=p) for i, p in enumerate(prios)]
    order = [prios[int(key[2][1:])] for key in Ruleset({"nftables": items}).input_chains()]
    assert order == ["raw", -200, "mangle", -120, -101, "dstnat", -99, "filter", "unknown", 25, "security", 75,
                     "srcnat"]


def test_only_input_chains_of_the_ip_and_inet_families_are_evaluated():
    items = [chain("in6", "input", family="ip6", policy="drop"), chain("fwd", "forward", policy="drop"),
             chain("out", "output", policy="drop"), chain("br", "input", family="bridge", policy="drop"),
             chain("mine", "input", family="ip", policy="accept"), chain("plain")]
    assert [key[2] for key in Ruleset({"nftables": items}).input_chains()] == ["mine"]
    assert Ruleset({"nftables": items}).verdict(PACKET).blocked_by is None


def test_a_drop_in_an_earlier_chain_wins_and_an_accept_ends_its_own_chain_only():
    accept_all = [rule("first", 2, {"accept": None}, table="a")]
    later_drop = [rule("second", 3, match(dport("tcp"), 6443), {"drop": None}, table="b")]
    items = [chain("first", "input", prio="raw", table="a"), chain("second", "input", prio="filter", table="b"),
             *accept_all, *later_drop]
    assert Ruleset({"nftables": items}).verdict(PACKET).blocked_by == \
        "`tcp dport 6443 drop` (inet b second, handle 3)"
    policy_drop = [chain("first", "input", prio="filter", table="a"),
                   chain("second", "input", prio="security", table="b", policy="drop"), *accept_all]
    assert Ruleset({"nftables": policy_drop}).verdict(PACKET).blocked_by == "policy drop of chain inet b second"


def test_jumps_to_a_missing_chain_or_past_the_depth_nft_allows_are_unsure():
    missing = [chain("input", "input"), rule("input", 2, {"jump": {"target": "gone"}})]
    assert Ruleset({"nftables": missing}).verdict(PACKET).unsure == ["chain inet filter gone (missing or too deep)"]
    loop = [chain("input", "input"), chain("again"), rule("input", 2, {"jump": {"target": "again"}}),
            rule("again", 3, {"jump": {"target": "again"}})]
    assert Ruleset({"nftables": loop}).verdict(PACKET).unsure == ["chain inet filter again (missing or too deep)"]
    goto = [chain("input", "input", policy="drop"), chain("side"), rule("input", 2, {"goto": {"target": "side"}}),
            rule("input", 3, {"accept": None})]
    assert Ruleset({"nftables": goto}).verdict(PACKET).blocked_by == "policy drop of chain inet filter input"


def test_queues_xtables_targets_and_continue():
    assert dropping({"queue": {"num": 1}}).unsure == ["`queue drop` (inet filter input, handle 7)"]
    xt = [chain("input", "input"), rule("input", 2, {"xt": {"type": "target", "name": "LOG"}})]
    assert Ruleset({"nftables": xt}).verdict(PACKET).unsure == ["`xt` (inet filter input, handle 2)"]
    skipped = [chain("input", "input"), rule("input", 2, {"counter": None}, {"continue": None}, {"drop": None})]
    assert Ruleset({"nftables": skipped}).verdict(PACKET).blocked_by is None


@pytest.mark.parametrize(("exprs", "shown"), [
    ([match(dport("tcp"), {"set": [22, 6443]}), {"counter": None}, {"drop": None}], "tcp dport { 22, 6443 } drop"),
    ([match(dport("tcp"), 22, "!="), {"log": {"prefix": "x"}}, {"accept": None}], "tcp dport != 22 log accept"),
    ([match(SADDR, {"prefix": {"addr": "10.9.0.0", "len": 24}}), {"jump": {"target": "peers"}}],
     "ip saddr 10.9.0.0/24 jump peers"),
    ([match(dport("udp"), {"range": [2379, 2380]}), {"goto": {"target": "etcd"}}], "udp dport 2379-2380 goto etcd"),
    ([match(IIFNAME, "eth*"), match(CT_STATE, ["new", "untracked"]), {"reject": {"type": "tcp reset"}}],
     "meta iifname eth* ct state new,untracked reject with tcp reset"),
    ([match({"fib": {"result": "type"}}, "local"), {"reject": None}], "fib local reject"),
    ([match({"meta": {}}, 1), {"comment": "x"}, {"drop": None}], "meta 1 drop"),
    ([{"vmap": {"key": dport("tcp"), "data": {"set": [[22, {"accept": None}], [6443, {"drop": None}]]}}}],
     "tcp dport vmap { 22 : accept, 6443 : drop }"),
    ([match(CT_STATE, ["established", "related"], "in"), {"accept": None}], "ct state established,related accept"),
])
def test_a_rule_is_shown_as_nft_lists_it_with_its_chain_and_handle(exprs, shown):
    assert describe(rule("input", 9, *exprs)["rule"]) == f"`{shown}` (inet filter input, handle 9)"


def test_an_iptables_rule_is_shown_as_iptables_save_wrote_it_and_a_rule_without_handle_says_so():
    text = {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 4, "expr": [], "text": "-A INPUT -j DROP"}
    assert describe(text) == "`-A INPUT -j DROP` (ip filter INPUT, 4)"
    plain = {"family": "inet", "table": "t", "chain": "c", "expr": [{"drop": None}]}
    assert describe(plain) == "`drop` (inet t c, handle ?)"


def test_a_verdict_map_without_the_packets_entry_or_on_another_protocol_decides_nothing():
    items = [chain("input", "input"), rule("input", 2, {"vmap": {"key": dport("udp"), "data": {
        "set": [[6443, {"drop": None}]]}}}), rule("input", 3, {"vmap": {"key": dport("tcp"), "data": {
            "set": [[22, {"drop": None}], [{"range": [1, 2]}, {"queue": None}]]}}})]
    assert Ruleset({"nftables": items}).verdict(PACKET) == Ruleset({"nftables": items[:1]}).verdict(PACKET)
    odd = [chain("input", "input"), rule("input", 2, {"vmap": {"key": dport("tcp"), "data": {
        "set": [[6443, {"queue": None}]]}}}), rule("input", 3, {"vmap": {"key": {"meta": {"key": "mark"}}, "data": {
            "set": [[1, {"drop": None}]]}}}), rule("input", 4, {"vmap": {"key": dport("tcp"), "data": {
                "set": [["@named", {"drop": None}]]}}})]
    assert len(Ruleset({"nftables": odd}).verdict(PACKET).unsure) == 3


def test_parse_reads_nfts_json_and_an_empty_ruleset():
    assert Ruleset.parse("").input_chains() == [] and Ruleset.parse("  \n").verdict(PACKET).blocked_by is None
    text = '{"nftables": [{"metainfo": {}}, ' + \
        '{"chain": {"family": "inet", "table": "f", "name": "input", "hook": "input", "prio": 0, "policy": "drop"}}]}'
    assert Ruleset.parse(text).verdict(PACKET).blocked_by == "policy drop of chain inet f input"


def test_the_first_base_chain_that_drops_names_the_rule_and_later_chains_do_not_run():
    """nft(8), VERDICT STATEMENT: a drop "occurs instantly, no further chains or hooks are evaluated"."""
    items = [chain("early", "input", prio=-300, table="a"), chain("late", "input", prio=0, table="b"),
             rule("early", 2, match(dport("tcp"), 6443), {"drop": None}, table="a"),
             rule("late", 3, match({"meta": {"key": "mark"}}, 1), {"accept": None}, table="b"),
             rule("late", 4, match({"meta": {"key": "mark"}}, 2), {"drop": None}, table="b"),
             rule("late", 5, {"drop": None}, table="b")]
    assert Ruleset({"nftables": items}).verdict(PACKET) == Verdict("`tcp dport 6443 drop` (inet a early, handle 2)")


def test_a_rule_the_kit_cannot_decide_does_not_stop_its_chain():
    """The rules after one the kit cannot evaluate still run: a later drop is found, the earlier rule named."""
    items = [chain("input", "input"), rule("input", 2, match({"meta": {"key": "mark"}}, 1), {"accept": None}),
             rule("input", 3, match(dport("tcp"), 6443), {"drop": None})]
    assert Ruleset({"nftables": items}).verdict(PACKET) == Verdict(
        "`tcp dport 6443 drop` (inet filter input, handle 3)",
        maybe_let_in=["`meta mark 1 accept` (inet filter input, handle 2)"])


def test_statements_before_a_match_do_not_end_the_rules_matches():
    """nft allows statements anywhere in a rule (nft(8), STATEMENTS; nft 1.0.6 -j lists `counter tcp dport 22
    accept` as counter, match, accept): the match after the counter still decides."""
    assert dropping({"counter": {"packets": 0, "bytes": 0}}, match(dport("tcp"), 22)) == Verdict()
    assert dropping({"log": {"prefix": "x"}}, match(dport("tcp"), 6443)).blocked_by is not None


def test_a_chain_as_deep_as_the_kernel_allows_is_evaluated():
    """The kernel refuses a jump to a 16th chain level (nf_tables_api.c nft_chain_validate: level ==
    NFT_JUMP_STACK_SIZE, 16, is -EMLINK; on Linux 6.18 `nft -f` takes 15 nested jumps and refuses 16): the
    deepest ruleset a host can hold, 15 jumps below its base chain, is decided, not reported as too deep."""
    items = [chain("input", "input"), rule("input", 1, {"jump": {"target": "c1"}})]
    for level in range(1, 16):
        items.append(chain(f"c{level}"))
        last = (match(dport("tcp"), 6443), {"drop": None}) if level == 15 else ({"jump": {"target": f"c{level + 1}"}},)
        items.append(rule(f"c{level}", level + 1, *last))
    assert Ruleset({"nftables": items}).verdict(PACKET) == Verdict("`tcp dport 6443 drop` (inet filter c15, handle 16)")


def test_standard_priority_names_have_nfts_values():
    """nft(8) Table 6: raw -300, mangle -150, security 50, srcnat 100; one less runs before a name, one more after."""
    prios = ["raw", "mangle", -301, -299, -151, -149, 49, 51, 99, 101, "security", "srcnat"]
    items = [chain(f"c{i}", "input", prio=p) for i, p in enumerate(prios)]
    order = [prios[int(key[2][1:])] for key in Ruleset({"nftables": items}).input_chains()]
    assert order == [-301, "raw", -299, -151, "mangle", -149, 49, "security", 51, 99, "srcnat", 101]


def test_a_queue_is_unsure_userspace_decides():
    """nft(8): queue hands the packet to userspace, which "must provide a drop or accept verdict"."""
    items = [chain("input", "input"), rule("input", 2, match(dport("tcp"), 6443), {"queue": {"num": 1}})]
    assert Ruleset({"nftables": items}).verdict(PACKET) == Verdict(
        unsure=["`tcp dport 6443 queue` (inet filter input, handle 2)"])


def test_a_verdict_map_the_kit_cannot_read_behind_an_unknown_match_may_block():
    """A rule with a match the kit cannot decide and a verdict map it cannot read (a named map, an entry on an
    interface the probe did not find, a verdict it does not model) may drop: unsure, not a maybe-accept."""
    unknown = Packet("tcp", 6443, PEER, SELF, None)
    mark = match({"meta": {"key": "mark"}}, 1)
    maps = [{"vmap": {"key": dport("tcp"), "data": "@m"}},
            {"vmap": {"key": IIFNAME, "data": {"set": [["eth0", {"drop": None}]]}}},
            {"vmap": {"key": dport("tcp"), "data": {"set": [[6443, {"queue": None}]]}}}]
    items = [chain("input", "input"), *(rule("input", 2 + i, mark, vmap) for i, vmap in enumerate(maps))]
    outcome = Ruleset({"nftables": items}).verdict(unknown)
    assert (outcome.blocked_by, len(outcome.unsure), outcome.maybe_let_in) == (None, 3, [])


def test_nft_tables_beside_iptables_nft_ones_are_kept():
    """The iptables-nft-save tables replace only their own JSON form: an nftables table of its own (ufw's or
    firewalld's on nftables, a hand-written one) still decides; an empty nft text with a save reads the save."""
    save = ("# Generated by iptables-nft-save v1.8.9 (nf_tables)\n*filter\n:INPUT ACCEPT [0:0]\n"
            "-A INPUT -p tcp --dport 6443 -j DROP\nCOMMIT\n")
    native = {"nftables": [chain("input", "input", table="fw"),
                           rule("input", 2, match(dport("udp"), 8472), {"drop": None}, table="fw"),
                           chain("INPUT", "input", family="ip"), rule("INPUT", 3, {"accept": None}, family="ip")]}
    ruleset = Ruleset.parse(json.dumps(native), save)
    assert ruleset.verdict(Packet("udp", 8472, PEER, SELF)).blocked_by == \
        "`udp dport 8472 drop` (inet fw input, handle 2)"
    assert ruleset.verdict(PACKET).blocked_by == \
        "`-A INPUT -p tcp --dport 6443 -j DROP` (ip filter INPUT, iptables -t filter rule 1)"
    assert Ruleset.parse("", save).verdict(PACKET).blocked_by == ruleset.verdict(PACKET).blocked_by
