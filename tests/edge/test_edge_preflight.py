"""Preflight for real plants: a skewed clock named with its figure, no time sync warned, br_netfilter loaded and
persisted (or refused when the kernel lacks it), the host firewall read from its nftables ruleset (a blocked 6443 on
the server stops every host before anything is installed), and joiners that cannot reach the API endpoint."""
import ipaddress
import json

import pytest
import yaml

from edge_hosts.preflight.firewall import Packet, Ruleset
from edge_hosts.inventory.load import load_inventory
from edge_hosts.facts.probe import Facts, _facts
from edge_hosts.engine.context import HostContext
from edge_hosts.preflight.checks import (MODULES_FILE, clock_offset, clock_problem, firewall_findings, reach_findings,
                                         time_sync_warnings)

from helpers import json_result, kit, valid_document, write_inventory

PEER, SELF = ipaddress.ip_address("10.9.0.12"), ipaddress.ip_address("10.9.0.11")


# -- the firewall evaluation, on rulesets in `nft -j list ruleset`'s shape ------------------------------------------
def chain(name, hook=None, policy="accept", prio=0, table="filter", family="inet"):
    base = {"type": "filter", "hook": hook, "prio": prio, "policy": policy} if hook else {}
    return {"chain": {"family": family, "table": table, "name": name, **base}}


def rule(chain_name, handle, *exprs, table="filter", family="inet"):
    return {"rule": {"family": family, "table": table, "chain": chain_name, "handle": handle, "expr": list(exprs)}}


def match(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


def dport(proto):
    return {"payload": {"protocol": proto, "field": "dport"}}


SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}


def verdict(items, proto, port, source=PEER, interface=None):
    return Ruleset({"nftables": items}).verdict(Packet(proto, port, source, SELF, interface))


def test_a_drop_policy_blocks_what_no_rule_accepts_and_names_the_policy():
    items = [chain("input", "input", policy="drop"),
             rule("input", 2, match({"meta": {"key": "iif"}}, "lo"), {"accept": None}),
             rule("input", 3, match({"ct": {"key": "state"}}, ["established", "related"]), {"accept": None}),
             rule("input", 4, match(dport("tcp"), {"set": [22, 6443]}), {"accept": None}),
             rule("input", 5, match(dport("tcp"), {"range": [2379, 2380]}), {"counter": None}, {"accept": None})]
    assert verdict(items, "tcp", 6443).blocked_by is None
    assert verdict(items, "tcp", 2380).blocked_by is None
    assert verdict(items, "udp", 6443).blocked_by == "policy drop of chain inet filter input"  # tcp rules only
    assert verdict(items, "udp", 8472).unsure == []


def test_the_embedded_registry_mirrors_port_is_wanted_only_when_the_site_enables_it(tmp_path):
    closed = [chain("input", "input", policy="drop")]
    plain = context(tmp_path)
    assert not any("5001/tcp" in w for w in firewall_findings(plain.inventory, plain.host, ruleset_facts(closed))[1])
    doc = valid_document()
    doc["registries"] = {"embeddedMirror": True, "mirrors": {"docker.io": {}}}
    mirrored = load_inventory(str(write_inventory(tmp_path, doc, "mirrored.yaml")))
    problems, warnings = firewall_findings(mirrored, mirrored.host("a1"), ruleset_facts(closed))
    assert not any("5001/tcp" in p for p in problems)  # pulls only take longer when peers cannot share images
    assert [w.split(" (")[0] for w in warnings][-1] == "the host firewall blocks 5001/tcp"


def test_jumps_returns_sets_prefixes_and_not_equal_follow_nftables():
    items = [chain("input", "input"), chain("peers"),
             rule("input", 2, {"jump": {"target": "peers"}}),
             rule("input", 3, match(dport("tcp"), 6443, op="!="), {"drop": None}),
             rule("peers", 4, match(SADDR, {"set": ["10.9.0.13", {"prefix": {"addr": "10.9.0.0", "len": 28}}]}),
                  {"return": None}),
             rule("peers", 5, match(dport("udp"), 8472), {"reject": {"type": "icmpx", "expr": "port-unreachable"}})]
    assert verdict(items, "udp", 8472).blocked_by is None  # 10.9.0.12 is in 10.9.0.0/28: returned before the reject
    outside = verdict(items, "udp", 8472, source=ipaddress.ip_address("10.9.0.99"))
    assert outside.blocked_by == "`udp dport 8472 reject with icmpx` (inet filter peers, handle 5)"
    assert verdict(items, "tcp", 10250).blocked_by == "`tcp dport != 6443 drop` (inet filter input, handle 3)"
    assert verdict(items, "tcp", 6443).blocked_by is None


def test_verdict_maps_give_the_verdict_of_the_entry_the_packet_hits():
    ports = {"set": [[22, {"accept": None}], [{"range": [2379, 2380]}, {"jump": {"target": "etcd"}}],
                     [6443, {"drop": None}]]}
    items = [chain("input", "input"), chain("etcd"),
             rule("input", 2, {"vmap": {"key": {"ct": {"key": "state"}}, "data": {
                 "set": [["invalid", {"drop": None}], ["established", {"accept": None}]]}}}),
             rule("input", 3, {"vmap": {"key": dport("tcp"), "data": ports}}),
             rule("etcd", 4, match(SADDR, {"prefix": {"addr": "10.9.0.0", "len": 24}}), {"accept": None}),
             rule("etcd", 5, {"drop": None})]
    assert verdict(items, "tcp", 6443).blocked_by == \
        "`tcp dport vmap { 22 : accept, 2379-2380 : jump, 6443 : drop }` (inet filter input, handle 3)"
    assert verdict(items, "tcp", 2379).blocked_by is None  # jumped to etcd: a peer of the node subnet
    assert verdict(items, "tcp", 2380, source=ipaddress.ip_address("192.0.2.7")).blocked_by.startswith("`drop`")
    assert verdict(items, "udp", 6443).blocked_by is None and verdict(items, "tcp", 10250).blocked_by is None
    named = [chain("input", "input"), rule("input", 2, {"vmap": {"key": dport("tcp"), "data": "@ports"}})]
    assert verdict(named, "tcp", 6443).unsure == ["`tcp dport vmap { @ports }` (inet filter input, handle 2)"]


def test_an_accept_ends_one_base_chain_only_and_unknown_matches_are_reported_not_guessed():
    items = [chain("first", "input", prio=-10), chain("INPUT", "input", prio=0, table="fw", family="ip"),
             rule("first", 2, match(dport("tcp"), 6443), {"accept": None}),
             rule("INPUT", 3, match({"meta": {"key": "iifname"}}, "eth0", op="=="),
                  match(dport("tcp"), 6443), {"drop": None}, table="fw", family="ip"),
             rule("INPUT", 4, match(dport("tcp"), 10250), {"xt": {"type": "match", "name": "addrtype"}},
                  {"drop": None}, table="fw", family="ip")]
    unsure = verdict(items, "tcp", 6443)  # accepted by the first chain, then a rule on an interface the kit can't see
    assert unsure.blocked_by is None
    assert unsure.unsure == ["`meta iifname eth0 tcp dport 6443 drop` (ip fw INPUT, handle 3)"]
    assert verdict(items, "tcp", 10250).unsure == ["`tcp dport 10250 xt drop` (ip fw INPUT, handle 4)"]
    assert verdict(items, "tcp", 22).unsure == []
    # with the interface the probe found (the node subnet's route), the rule is decided
    assert verdict(items, "tcp", 6443, interface="eth0").blocked_by.startswith("`meta iifname eth0 tcp dport 6443")
    assert verdict(items, "tcp", 6443, interface="wlan0") == verdict(items, "tcp", 22)
    wildcard = [chain("input", "input"), rule("input", 2, match({"meta": {"key": "iifname"}}, "enp*"), {"drop": None})]
    assert verdict(wildcard, "udp", 8472, interface="enp1s0").blocked_by is not None
    assert verdict(wildcard, "udp", 8472, interface="eth0").blocked_by is None


def ruleset_facts(items) -> Facts:
    return Facts({"nft_ruleset": json.dumps({"nftables": items})})


def test_a_block_behind_a_rule_the_kit_cannot_read_is_a_warning_not_a_failure(tmp_path):
    ctx = context(tmp_path)
    server = ctx.inventory.host("s1")
    closed = [chain("input", "input", policy="drop")]
    problems, warnings = firewall_findings(ctx.inventory, server, ruleset_facts(closed))
    assert [p.split(" (")[0] for p in problems] == [f"the host firewall blocks {p}" for p in ("6443/tcp", "8472/udp")]
    assert [w.split(" (")[0] for w in warnings] == [f"the host firewall blocks {p}"
                                                    for p in ("10250/tcp", "7946/tcp", "7946/udp")]
    assert "from a1: policy drop of chain inet filter input; add an nftables rule accepting tcp dport 6443 from " \
           "10.9.0.0/24 before it" in problems[0]
    maybe = closed + [rule("input", 2, match({"meta": {"key": "iifname"}}, "eth0"), {"accept": None})]
    problems, warnings = firewall_findings(ctx.inventory, server, ruleset_facts(maybe))
    assert problems == [] and len(warnings) == 5
    assert warnings[0].endswith("(unless `meta iifname eth0 accept` (inet filter input, handle 2) lets it in: the kit "
                                "cannot evaluate it)")
    assert verdict(maybe, "tcp", 6443).maybe_let_in == ["`meta iifname eth0 accept` (inet filter input, handle 2)"]
    legacy = Facts({"nft_ruleset": "", "iptables_legacy_rules": "3"})
    assert firewall_findings(ctx.inventory, server, legacy)[1][0].startswith("3 iptables-legacy rules or DROP policies")
    no_nft = Facts({"firewall_tools": "iptables ufw"})
    assert firewall_findings(ctx.inventory, server, no_nft) == (
        [], ["iptables, ufw present but no nft command: the host firewall was not checked (install nftables so "
             "preflight can read the ruleset)"])


def test_a_joiners_connect_is_read_from_bashs_answer(tmp_path):
    ctx = context(tmp_path)
    agent = ctx.inventory.host("a1")

    def problems(answer: str) -> list[str]:
        return reach_findings(ctx.inventory, agent, _facts(agent, f"reach 10.9.0.11 6443 {answer}\n"))[0]

    assert problems("0") == [] and problems("1 Connection refused") == []  # the server's kernel answered
    assert problems("124") == ["cannot reach the API endpoint 10.9.0.11:6443/tcp (no answer within 3 s: a firewall "
                               "on the way or on the server drops it)"]
    assert problems("1 No route to host") == ["cannot reach the API endpoint 10.9.0.11:6443/tcp (No route to host)"]
    untried = reach_findings(ctx.inventory, agent, _facts(agent, "reach 10.9.0.11 6443 127 No such file\n"))
    assert untried == ([], ["the API endpoint 10.9.0.11:6443/tcp was not tried: the host has no bash or timeout "
                            "command to connect with"])
    assert reach_findings(ctx.inventory, ctx.inventory.host("s1"), Facts({})) == ([], [])  # the first server joins none


IPTABLES_SAVE = """# Generated by iptables-save v1.8.9 (nf_tables) on Wed Dec  2 10:17:19 2026
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:ufw-user-input - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -m state --state NEW -m limit --limit 3/min -j LOG --log-prefix "[UFW] "
-A INPUT -j ufw-user-input
-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT
-A ufw-user-input -s 10.9.0.0/24 -p udp -m multiport --dports 8472,7946:7950 -m comment --comment "k3s a" -j ACCEPT
-A ufw-user-input ! -s 10.9.0.0/24 -p tcp -m tcp --dport 6443 -j ACCEPT
-A ufw-user-input -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 10250 -j REJECT --reject-with tcp-reset
COMMIT
"""


def test_iptables_nft_rules_are_read_from_iptables_save_not_guessed_from_xt():
    # what nft -j shows of such a ruleset: the conntrack and multiport matches are opaque
    opaque = {"nftables": [chain("INPUT", "input", policy="drop", family="ip"),
                           rule("INPUT", 2, {"xt": {"type": "match", "name": "conntrack"}}, {"drop": None},
                                family="ip")]}
    ruleset = Ruleset.parse(json.dumps(opaque), IPTABLES_SAVE)
    assert ruleset.verdict(Packet("udp", 8472, PEER, SELF)).blocked_by is None  # multiport, from the subnet
    assert ruleset.verdict(Packet("udp", 7948, PEER, SELF)).blocked_by is None  # in the range
    assert ruleset.verdict(Packet("tcp", 6443, PEER, SELF)).blocked_by == "policy drop of chain ip filter INPUT"
    outsider = Packet("tcp", 6443, ipaddress.ip_address("192.0.2.1"), SELF)
    assert ruleset.verdict(outsider).blocked_by is None  # `! -s` the subnet
    unsure = ruleset.verdict(Packet("tcp", 10250, PEER, SELF))
    assert unsure.unsure == ["`-A ufw-user-input -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 10250 -j REJECT "
                             "--reject-with tcp-reset` (ip filter ufw-user-input, iptables -t filter rule 4)"]
    assert unsure.blocked_by == "policy drop of chain ip filter INPUT"
    assert Ruleset.parse(json.dumps(opaque), "# Generated by iptables-save v1.8.9 (legacy)\n*filter\n").verdict(
        Packet("udp", 8472, PEER, SELF)).unsure  # a legacy save is not the nftables ruleset: the xt rule stays


UFW_DENY_SAVE = """# Generated by iptables-save v1.8.9 (nf_tables) on Wed Dec  2 10:17:19 2026
*filter
:INPUT ACCEPT [0:0]
:ufw-user-input - [0:0]
-A INPUT -j ufw-user-input
-A ufw-user-input -p tcp -m tcp --dport 6443 -j DROP
-A ufw-user-input -p udp -m udp --dport 8472 -j DROP
COMMIT
"""


@pytest.mark.parametrize("proto,port,rule_number", [("tcp", 6443, 1), ("udp", 8472, 2)])
def test_an_iptables_drop_rule_on_a_k3s_port_blocks_it_under_an_accept_policy(proto, port, rule_number):
    found = Ruleset.parse(json.dumps({"nftables": []}), UFW_DENY_SAVE).verdict(Packet(proto, port, PEER, SELF))
    assert found.blocked_by == (f"`-A ufw-user-input -p {proto} -m {proto} --dport {port} -j DROP` "
                                f"(ip filter ufw-user-input, iptables -t filter rule {rule_number})")
    assert Ruleset.parse(json.dumps({"nftables": []}), UFW_DENY_SAVE).verdict(
        Packet("tcp", 10250, PEER, SELF)).blocked_by is None  # no rule for it: the accept policy


def test_an_nftables_drop_rule_on_a_k3s_port_blocks_it_under_an_accept_policy():
    items = [chain("input", "input"), rule("input", 7, match(dport("tcp"), 6443), {"drop": None})]
    assert verdict(items, "tcp", 6443).blocked_by is not None
    assert verdict(items, "tcp", 10250).blocked_by is None


# -- the clock and time sync ------------------------------------------------------------------------------------
def context(tmp_path, **preflight):
    doc = valid_document()
    if preflight:
        doc["preflight"] = preflight
    inventory = load_inventory(str(write_inventory(tmp_path, doc)))
    return HostContext(inventory, inventory.host("a1"), session=None, source=None)


def clock(start, end, sent, received) -> Facts:
    return Facts({"clock_start": start, "clock_end": end, "clock_sent": sent, "clock_received": received})


def test_the_skew_is_measured_around_the_round_trip(tmp_path):
    t = 1_800_000_000.0
    # the host's clock is right, the link slow: 1.9 s out, 0.1 s back; the script took 0.5 s
    slow = clock(f"{t + 1.9:.6f}", f"{t + 2.4:.6f}", repr(t), repr(t + 2.5))
    low, high = clock_offset(slow)
    assert low <= 0 <= high and high - low == pytest.approx(2.0, abs=1e-3)  # the round trip less the script
    assert clock_problem(context(tmp_path), slow) is None  # latency is not skew
    behind = clock(f"{t - 7200:.6f}", f"{t - 7199.9:.6f}", repr(t), repr(t + 0.3))
    assert clock_problem(context(tmp_path), behind).startswith("the clock is 7200.1 s behind this machine's (±0.10 s")
    ahead = clock(f"{t + 5:.6f}", f"{t + 5:.6f}", repr(t), repr(t + 0.01))
    assert "5.0 s ahead" in clock_problem(context(tmp_path), ahead)
    assert clock_problem(context(tmp_path, maxClockSkew=10), ahead) is None
    whole = clock(f"{int(t) + 3}.%N", f"{int(t) + 3}.%N", repr(t), repr(t + 0.01))  # a date without %N
    assert clock_offset(whole) == pytest.approx((3.0 - 0.01, 4.0))


def test_time_sync_warnings():
    assert time_sync_warnings(Facts({"ntp_synchronized": "yes"})) == []
    none = time_sync_warnings(Facts({"ntp_synchronized": "", "time_sync": "inactive " * 7}))
    assert len(none) == 1 and none[0].startswith("no time-sync service is active")
    chrony = time_sync_warnings(Facts({"ntp_synchronized": "no", "time_sync": "inactive inactive active"}))
    assert chrony == ["chrony is active but the clock is not synchronized (timedatectl NTPSynchronized=no): can it "
                      "reach its time servers from the plant network?"]


# -- on the lab -----------------------------------------------------------------------------------------------------
def lab_site(lab, tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(lab.site_file.read_text())
    return site


def bootstrap(site, tmp_path):
    done = kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(tmp_path / "kubeconfig"))
    return done, json_result(done)


def installed(lab, name: str) -> list[str]:
    found = lab.exec(name, "ls /usr/local/bin/k3s /etc/systemd/system/k3s*.service 2>/dev/null", check=False)
    return found.stdout.split()


def test_a_skewed_clock_fails_that_host_no_time_sync_is_warned_and_br_netfilter_is_loaded(lab_factory, tmp_path):
    lab = lab_factory(hosts=2, servers=1)
    lab.set_clock("edge-2", -7200)  # a Pi back from a power cut, at its last saved time
    lab.set_clock("edge-1", synced=False)
    lab.unload_br_netfilter("edge-1")
    site = lab_site(lab, tmp_path)
    planned = json_result(kit("edge.plan", "--site", str(site), "--json"))
    assert "os-prep: load br_netfilter and list it in /etc/modules-load.d" in planned["edge-1"]["changed"]
    done, hosts = bootstrap(site, tmp_path)
    assert done.returncode == 1, done.stderr
    assert hosts["edge-2"]["error"].startswith("preflight: the clock is 7200.0 s behind this machine's (±")
    assert installed(lab, "edge-2") == []
    assert hosts["edge-1"]["status"] == "changed", hosts["edge-1"]  # warnings only: the server is bootstrapped
    assert "warning: edge-1: no time-sync service is active" in done.stderr
    assert f"warning: edge-1: br_netfilter is not loaded: os-prep loads it and lists it in {MODULES_FILE}" \
        in done.stderr
    assert "warning: edge-2" not in done.stderr
    assert lab.exec("edge-1", "test -e /proc/sys/net/bridge/bridge-nf-call-iptables", check=False).returncode == 0
    assert lab.exec("edge-1", f"cat {MODULES_FILE}").stdout == "br_netfilter\n"
    lab.set_clock("edge-2", 0)
    lab.set_clock("edge-1")
    done, hosts = bootstrap(site, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: edge-" not in done.stderr
    plan = json_result(kit("edge.plan", "--site", str(site), "--json"))
    assert {h["status"] for h in plan.values()} == {"ok"}, plan


@pytest.fixture(scope="module")
def site_lab(module_lab_factory):
    return module_lab_factory(hosts=3, servers=1)


@pytest.fixture
def clean(site_lab):
    """Each test starts with no firewall rules on any host and leaves none behind."""
    yield site_lab
    for host in site_lab.hosts:
        site_lab.exec(host.name, "nft flush ruleset")


def nft(lab, host: str, *commands: str, family="inet", table="kit_test", hook="input") -> None:
    base = f"{{ type filter hook {hook} priority 0; policy accept; }}"
    lab.exec(host, f"nft add table {family} {table} && nft add chain {family} {table} {hook} '{base}'")
    for command in commands:
        lab.exec(host, f"nft add rule {family} {table} {command}")


def test_a_firewall_that_blocks_6443_on_the_server_stops_every_host(clean, tmp_path):
    lab = clean
    nft(lab, "edge-1", "input tcp dport 6443 drop")
    site = lab_site(lab, tmp_path)
    server = lab.host("edge-1").address
    plan = json_result(kit("edge.plan", "--site", str(site), "--json"))
    for hosts in (bootstrap(site, tmp_path)[1], plan):
        assert {h["status"] for h in hosts.values()} == {"failed"}, hosts
        assert ("the host firewall blocks 6443/tcp (the k3s supervisor and API server) from edge-2, edge-3: "
                "`tcp dport 6443 drop` (inet kit_test input, handle 2); add an nftables rule accepting tcp dport 6443 "
                "from") in hosts["edge-1"]["error"]
        for joiner in ("edge-2", "edge-3"):
            assert f"cannot reach the API endpoint {server}:6443/tcp (no answer within 3 s" in hosts[joiner]["error"]
    assert [installed(lab, h.name) for h in lab.hosts] == [[], [], []]  # no binary, no unit anywhere
    # a reject answers like a closed port, so the joiners pass; the server's own preflight still holds them
    lab.exec("edge-1", "nft flush ruleset")
    nft(lab, "edge-1", "input tcp dport 6443 reject with tcp reset")
    done, hosts = bootstrap(site, tmp_path)
    assert "blocks 6443/tcp" in hosts["edge-1"]["error"]
    for joiner in ("edge-2", "edge-3"):
        assert hosts[joiner]["error"] == ("preflight: server edge-1 failed preflight; nothing is installed on any "
                                          "host until it passes")
    assert [installed(lab, h.name) for h in lab.hosts] == [[], [], []]


def test_a_joiner_that_cannot_reach_6443_and_a_ufw_that_drops_vxlan_are_named(clean, tmp_path):
    lab = clean
    nft(lab, "edge-2", "output tcp dport 6443 drop", hook="output")  # the way to the server is closed, not it
    lab.exec("edge-3", "nft add table ip filter && nft add chain ip filter INPUT "
                       "'{ type filter hook input priority 0; policy accept; }'"
                       " && nft add chain ip filter ufw-user-input && nft add rule ip filter INPUT jump ufw-user-input"
                       " && nft add rule ip filter ufw-user-input udp dport 8472 drop"
                       " && nft add rule ip filter ufw-user-input iifname eth0 tcp dport 10250 drop")
    done = kit("edge.plan", "--site", str(lab_site(lab, tmp_path)), "--json")
    hosts = json_result(done)
    assert hosts["edge-1"]["error"] is None
    server = lab.host("edge-1").address
    assert hosts["edge-2"]["error"] == f"cannot reach the API endpoint {server}:6443/tcp (no answer within 3 s: a " \
                                       f"firewall on the way or on the server drops it)"
    subnet = yaml.safe_load(lab.site_file.read_text())["nodeSubnet"]
    assert hosts["edge-3"]["error"] == (
        "the host firewall blocks 8472/udp (flannel VXLAN) from edge-1, edge-2: `udp dport 8472 drop` (ip filter "
        f"ufw-user-input, handle 4); open it with `ufw allow from {subnet} to any port 8472 proto udp`")
    assert "warning: edge-3: the host firewall blocks 10250/tcp (the kubelet (metrics, logs, exec))" in done.stderr


def test_iptables_rules_on_the_nftables_backend_are_evaluated_as_iptables_wrote_them(clean, tmp_path):
    lab = clean
    subnet = yaml.safe_load(lab.site_file.read_text())["nodeSubnet"]
    lab.exec("edge-2", "\n".join([
        "set -e", "iptables -A INPUT -i lo -j ACCEPT",
        "iptables -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "iptables -A INPUT -m conntrack --ctstate INVALID -j DROP",
        "iptables -A INPUT -p tcp --dport 22 -j ACCEPT",
        f"iptables -A INPUT -s {subnet} -p udp -m multiport --dports 8472,7946 -m comment --comment k3s -j ACCEPT",
        "iptables -P INPUT DROP"]))
    assert '"xt"' in lab.exec("edge-2", "nft -j list ruleset").stdout  # what nft alone cannot read
    done = kit("edge.plan", "--site", str(lab_site(lab, tmp_path)), "--json")
    hosts = json_result(done)
    assert hosts["edge-2"]["error"] is None, hosts["edge-2"]  # 8472/udp is let in from the node subnet
    assert "warning: edge-2: the host firewall blocks 10250/tcp (the kubelet (metrics, logs, exec)) from edge-1, " \
           "edge-3: policy drop of chain ip filter INPUT" in done.stderr
    assert "warning: edge-2: the host firewall blocks 7946/tcp" in done.stderr
    assert "7946/udp" not in done.stderr and "cannot evaluate" not in done.stderr


def test_a_kernel_without_br_netfilter_is_refused(clean, tmp_path):
    lab = clean
    lab.unload_br_netfilter("edge-2", available=False)
    try:
        hosts = json_result(kit("edge.plan", "--site", str(lab_site(lab, tmp_path)), "--json"))
        assert hosts["edge-2"]["error"].startswith("br_netfilter is not loaded and this kernel has no such module")
        assert hosts["edge-1"]["error"] is None
    finally:
        lab.exec("edge-2", "umount /proc/sys/net/bridge; rm -f /usr/local/sbin/modprobe")


def test_the_probe_reports_the_firewall_as_nft_prints_it(clean):
    nft(clean, "edge-1", "input tcp dport 6443 drop")
    printed = json.loads(clean.exec("edge-1", "nft -j list ruleset").stdout)
    ruleset = Ruleset(printed)
    address = ipaddress.ip_address(clean.host("edge-1").address)
    assert ruleset.verdict(Packet("tcp", 6443, PEER, address)).blocked_by.startswith("`tcp dport 6443 drop`")
    assert ruleset.verdict(Packet("tcp", 6444, PEER, address)).blocked_by is None
