"""Offline rules of the edge kit: k3s config keys per role (checked against the upstream flag list), arch aliases and
a 32-bit userland on a 64-bit kernel, SELinux, apiEndpoint, the site's tokens, speakerless nodes, pin warnings."""
import json
from datetime import date
from pathlib import Path

import pytest
import yaml

from edge_hosts.inventory import advice, configkeys
from edge_hosts.inventory import k3s_config
from edge_hosts.inventory.load import InventoryError, load_inventory
from edge_hosts.facts.probe import Facts
from edge_hosts.access.state import TokenStore, ca_hash, password
from edge_hosts.engine.context import HostContext
from edge_hosts.preflight.checks import arch_problem, preflight_problems
from edge_hosts.steps.service import failure_cause
from helpers import REPO, kit, valid_document, write_inventory

UPSTREAM = REPO.parent / "shared" / "upstream"
GOOD_FACTS = {"uid": "0", "route": "yes", "cgroup_memory": "yes", "disk_kb": str(8 << 20), "arch": "x86_64"}


def problems_of(tmp_path, document) -> str:
    with pytest.raises(InventoryError) as caught:
        load_inventory(str(write_inventory(tmp_path, document)))
    return str(caught.value)


def test_the_kits_key_list_is_the_v131_extract_plus_what_k3s_added_since():
    """k3s_keys.yaml (v1.37) is the upstream v1.31.4 extract with exactly the keys listed under `added`."""
    upstream = json.loads((UPSTREAM / "k3s-1.31" / "flags.json").read_text())
    data = yaml.safe_load(configkeys.KEYS_FILE.read_text())
    keys = configkeys.known_keys()
    assert keys["server"] == set(upstream["server"]) | set(data["added"])
    assert keys["agent"] == set(upstream["agent"]) and keys["disable"] == set(upstream["disableItems"])
    assert not set(data["added"]) & set(upstream["server"]) and not set(data["removed"]) & keys["server"]
    assert "v1.37" in configkeys.KEYS_FILE.read_text().splitlines()[0]


def test_newer_keys_are_accepted_and_removed_or_check_defeating_ones_refused(tmp_path):
    doc = valid_document()
    doc["k3s"].update(serverConfig={"etcd-s3-retention": 10, "etcd-s3-bucket-lookup-type": "path",
                                    "secrets-encryption-provider": "secretbox", "no-deploy": ["traefik"]},
                      agentConfig={"log": "/var/log/k3s.log"}, nodeConfig={"l": "/tmp/k3s.log"})
    lines = problems_of(tmp_path, doc).splitlines()
    text = "\n".join(lines)
    assert len(lines) == 3 and "etcd-s3" not in text and "secrets-encryption" not in text
    assert "k3s.serverConfig.no-deploy: 'no-deploy' was removed from k3s: use `disable`" in text
    assert "k3s.agentConfig.log: 'log' makes k3s start itself again" in text and "ready at once" in text
    assert "k3s.nodeConfig.l: 'l' makes k3s" in text
    doc["k3s"].update(agentConfig={}, nodeConfig={})
    doc["k3s"]["serverConfig"].pop("no-deploy")
    load_inventory(str(write_inventory(tmp_path, doc)))   # the newer keys alone load


def test_unknown_and_server_only_keys_are_refused_per_role_with_file_and_key(tmp_path):
    doc = valid_document()
    doc["k3s"].update(agentConfig={"kubelet-arg": ["max-pods=50"], "tls-san": ["x"], "kubelet-args": ["a"]},
                      serverConfig={"secrets-encryption": True, "disable": ["traefik", "servicelb2"], "tokn": "x"},
                      nodeConfig={"cluster-cidr": "10.42.0.0/16", "node-label+": ["a=b"]})
    lines = problems_of(tmp_path, doc).splitlines()
    path = str(tmp_path / "site.yaml")
    assert all(line.startswith(f"{path}: ") for line in lines) and len(lines) == 6
    text = "\n".join(lines)
    assert "k3s.agentConfig.tls-san: 'tls-san' is a server-only k3s flag: the agent stops on it" in text
    assert "k3s.agentConfig.kubelet-args: 'kubelet-args' is not a k3s agent flag" in text
    assert "k3s.serverConfig.tokn: 'tokn' is not a k3s server flag" in text
    assert "k3s.serverConfig.disable: 'servicelb2' is not something k3s can disable" in text
    assert "k3s.nodeConfig.cluster-cidr: 'cluster-cidr' is a server-only k3s flag" in text
    assert "k3s.nodeConfig.node-label+: set by the kit (from hosts[].labels)" in text


def test_a_bad_config_key_is_exit_2_naming_file_and_key(tmp_path):
    doc = valid_document()
    doc["k3s"]["agentConfig"] = {"write-kubeconfig-mode": "0644"}
    done = kit("edge.plan", "--site", str(write_inventory(tmp_path, doc)))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{tmp_path / 'site.yaml'}: k3s.agentConfig.write-kubeconfig-mode: " in done.stderr


def test_node_config_reaches_servers_and_agents_role_sections_win(tmp_path):
    doc = valid_document()
    doc["k3s"].update(nodeConfig={"kubelet-arg": ["max-pods=60"], "protect-kernel-defaults": True},
                      agentConfig={"kubelet-arg": ["max-pods=30"]})
    inventory = load_inventory(str(write_inventory(tmp_path, doc)))
    server, agent = (yaml.safe_load(k3s_config.render_config(inventory, h, None)) for h in inventory.hosts)
    assert server["kubelet-arg"] == ["max-pods=60"] and agent["kubelet-arg"] == ["max-pods=30"]
    assert server["protect-kernel-defaults"] is agent["protect-kernel-defaults"] is True


def test_tokens_per_role(tmp_path):
    doc = valid_document()
    doc["hosts"] += [{"name": "s2", "address": "10.9.0.13", "role": "server", "arch": "x86_64"},
                     {"name": "s3", "address": "10.9.0.14", "role": "server", "arch": "x86_64"}]
    inventory = load_inventory(str(write_inventory(tmp_path, doc)))
    tokens = k3s_config.Tokens("spw", "apw", "K10" + "a" * 64 + "::server:spw", "K10" + "a" * 64 + "::node:apw")
    first, agent, joiner = (yaml.safe_load(k3s_config.render_config(inventory, inventory.host(n), tokens))
                            for n in ("s1", "a1", "s2"))
    assert (first["token"], first["agent-token"], first["cluster-init"]) == ("spw", "apw", True)
    assert (joiner["token"], joiner["agent-token"]) == (tokens.server_full, "apw") and "cluster-init" not in joiner
    assert agent["token"] == tokens.agent_full and "agent-token" not in agent


def test_api_endpoint_is_used_for_joins_and_added_to_tls_san(tmp_path):
    doc = valid_document()
    doc["apiEndpoint"] = "edge.t1.example.internal"
    inventory = load_inventory(str(write_inventory(tmp_path, doc)))
    server, agent = (yaml.safe_load(k3s_config.render_config(inventory, h, None)) for h in inventory.hosts)
    assert server["tls-san"] == ["10.9.0.11", "edge.t1.example.internal"]
    assert agent["server"] == "https://edge.t1.example.internal:6443" == k3s_config.server_url(inventory)
    doc["apiEndpoint"] = "https://edge:6443"
    assert "apiEndpoint: Value error, 'https://edge:6443' is not a DNS name or an IPv4 address" in \
        problems_of(tmp_path, doc)


@pytest.mark.parametrize("reported,expected", [("aarch64", "arm64"), ("armv7l", "armv7"), ("armhf", "armv7"),
                                               ("amd64", "x86_64"), ("x86_64", "x86_64"), ("arm", "armv7")])
def test_arch_aliases_hosts_report(tmp_path, reported, expected):
    doc = valid_document()
    doc["hosts"][1]["arch"] = reported
    assert load_inventory(str(write_inventory(tmp_path, doc))).host("a1").arch == expected


def _ctx(tmp_path, arch: str, **k3s_settings) -> HostContext:
    doc = valid_document()
    doc["hosts"][1]["arch"] = arch
    doc["k3s"].update(k3s_settings)
    inventory = load_inventory(str(write_inventory(tmp_path, doc)))
    return HostContext(inventory, inventory.host("a1"), session=None, source=None)


def test_a_64_bit_kernel_on_a_32_bit_userland_is_named(tmp_path):
    pi = Facts({**GOOD_FACTS, "arch": "aarch64", "long_bit": "32", "dpkg_arch": "armhf"})
    problem = arch_problem(_ctx(tmp_path, "arm64").host, pi)
    assert problem.startswith("64-bit kernel (uname -m aarch64) on a 32-bit userland (getconf LONG_BIT 32, dpkg armhf)")
    assert "set arch: armv7" in problem
    assert arch_problem(_ctx(tmp_path, "armv7").host, pi) is None  # armhf binaries on that kernel are right
    pi64 = Facts({**GOOD_FACTS, "arch": "aarch64", "long_bit": "64", "dpkg_arch": "arm64"})
    assert arch_problem(_ctx(tmp_path, "arm64").host, pi64) is None
    assert "arch is aarch64, the inventory says armv7" in arch_problem(_ctx(tmp_path, "armv7").host, pi64)


def test_enforcing_selinux_is_refused_unless_policy_and_setting_are_there(tmp_path):
    enforcing = Facts({**GOOD_FACTS, "arch": "aarch64", "selinux": "enforcing"})
    assert any("SELinux is enforcing" in p for p in preflight_problems(_ctx(tmp_path, "arm64"), enforcing))
    ready = Facts({**enforcing.values, "selinux_policy": "yes"})
    assert not preflight_problems(_ctx(tmp_path, "arm64", nodeConfig={"selinux": True}), ready)
    assert preflight_problems(_ctx(tmp_path, "arm64"), ready)  # the policy alone: k3s must be told too


def test_token_store_keeps_its_secrets_private_and_adopts_an_old_full_token(private_state):
    store = TokenStore("s1")
    store.dir.mkdir(parents=True)
    (store.dir / "token").write_text("K10" + "b" * 64 + "::server:old-password\n")
    server, agent = store.passwords()
    assert server == "old-password" and len(agent) == 64 and store.passwords() == (server, agent)
    assert all((store.dir / n).stat().st_mode & 0o777 == 0o600 for n in ("server-token", "agent-token"))
    assert not (store.dir / "token").exists() and store.cluster_ca() is None
    store.learn_ca("c" * 64)
    assert store.cluster_ca() == "c" * 64
    store.forget()
    assert not list(store.dir.iterdir())


def test_token_forms():
    full = "K10" + "d" * 64 + "::node:pw:with:colons"
    assert (ca_hash(full), password(full)) == ("d" * 64, "pw:with:colons")
    assert (ca_hash("short"), password("short")) == (None, "short")


@pytest.mark.parametrize("line,cause", [
    ('level=info msg="Waiting to retrieve agent configuration; server is not ready: Node password rejected, '
     'duplicate hostname or contents of \'/etc/rancher/node/password\' may not match"', "node password rejected"),
    ('level=info msg="Waiting to retrieve agent configuration; server is not ready: failed to retrieve '
     'configuration from server: https://s:6443/v1-k3s/config: 401 Unauthorized"', "token rejected"),
    ('level=error msg="Failed to validate connection to cluster at https://s:6443: token CA hash does not match '
     'the Cluster CA certificate hash: a != b"', "token rejected"),
    ('level=error msg="Failed to validate connection to cluster at https://s:6443: failed to get CA certs: '
     'Get \\"https://s:6443/cacerts\\": dial tcp s:6443: connect: connection refused"', "server unreachable"),
    ('level=fatal msg="Error: flag provided but not defined: -tls-san"', "unknown config.yaml key"),
])
def test_failure_causes_from_k3s_log_lines(line, cause):
    found = failure_cause(f"Dec 01 22:40:01 edge-2 systemd[1]: Starting k3s-agent.service...\n{line}\n")
    assert found[0].startswith(cause) and found[1] == line


def test_speakerless_nodes_from_the_real_speaker_tolerations(tmp_path):
    manifest = list(yaml.safe_load_all((UPSTREAM / "metallb-0.16.1" / "metallb-native.yaml").read_text()))
    speaker = next(d for d in manifest if d and d["kind"] == "DaemonSet" and d["metadata"]["name"] == "speaker")
    tolerations = speaker["spec"]["template"]["spec"]["tolerations"]
    assert {(t["key"], t["effect"]) for t in tolerations} == set(advice.SPEAKER_TOLERATIONS)
    assert all(t["operator"] == "Exists" for t in tolerations)
    doc = valid_document()
    doc["hosts"][1]["taints"] = ["dedicated=ml:NoSchedule", "gpu:NoExecute", "soft=1:PreferNoSchedule"]
    doc["hosts"][0]["taints"] = ["node-role.kubernetes.io/control-plane:NoSchedule",
                                 "node.kubernetes.io/unschedulable:NoSchedule"]
    inventory = load_inventory(str(write_inventory(tmp_path, doc)))
    assert advice.speakerless(inventory) == {"a1": ["dedicated=ml:NoSchedule", "gpu:NoExecute"]}
    assert advice.speaker_tolerations(inventory) == []
    doc["metallb"]["speakerOnTaintedNodes"] = True
    asked = load_inventory(str(write_inventory(tmp_path, doc)))
    assert advice.speaker_tolerations(asked) == [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},
                                                 {"key": "gpu", "operator": "Exists", "effect": "NoExecute"}]
    assert not [n for n in advice.site_warnings(asked, date(2026, 12, 1)) if "speaker" in n]


def test_site_warnings_pins_and_ha_without_endpoint(tmp_path):
    doc = valid_document()
    doc["k3s"]["version"], doc["metallb"]["version"] = "v1.37.2+k3s1", "v0.16.1"
    doc["hosts"] += [{"name": "s2", "address": "10.9.0.13", "role": "server", "arch": "x86_64"},
                     {"name": "s3", "address": "10.9.0.14", "role": "server", "arch": "x86_64"}]
    inventory = load_inventory(str(write_inventory(tmp_path, doc)))
    notes = advice.site_warnings(inventory, date(2026, 12, 1))
    assert notes == ["3 servers but no apiEndpoint: joins and the kubeconfig use s1 alone; set apiEndpoint to a "
                     "DNS name or VIP of all servers"]
    late = advice.site_warnings(inventory, date(2027, 11, 1))
    assert any(n.startswith("pin k3s v1.37.2+k3s1 is past its end of support (2027-10-28") for n in late)
    doc["k3s"]["version"] = "v1.31.4+k3s1"
    old = advice.site_warnings(load_inventory(str(write_inventory(tmp_path, doc))), date(2026, 12, 1))
    assert any(n.startswith("pin k3s v1.31.4+k3s1 is past its end of support (2025-10-28") for n in old)


def test_plan_prints_site_warnings_offline(tmp_path):
    doc = valid_document()
    doc["k3s"]["version"] = "v1.31.4+k3s1"
    # the plan goes on to the hosts after warning: loopback addresses, nothing listens there, one quick attempt
    doc.update(nodeSubnet="127.0.9.0/24", metallb={"version": "v0.16.1", "addresses": ["127.0.9.200-127.0.9.210"]})
    doc["ssh"].update(retries=0, connectTimeout=2)
    for index, host in enumerate(doc["hosts"]):
        host["address"] = f"127.0.9.{11 + index}"
    (tmp_path / "id_ed25519").write_text("a key")
    done = kit("edge.plan", "--site", str(write_inventory(tmp_path, doc)), "--json")
    assert "warning: pin k3s v1.31.4+k3s1 is past its end of support" in done.stderr


@pytest.mark.parametrize("site", ["qa", "uat", "production"])
def test_shipped_sites_pin_supported_versions(site):
    inventory = load_inventory(site)
    assert not [n for n in advice.site_warnings(inventory, date(2026, 12, 1)) if n.startswith("pin ")]
    assert Path(inventory.source).read_text().count("releases/tag/") == 2  # each pin with its source


def test_only_the_log_since_the_last_start_counts():
    log = ("k3s[1]: msg=\"... token CA hash does not match ...\"\n"
           "systemd[1]: Starting k3s-agent.service - Lightweight Kubernetes...\n"
           "k3s[2]: msg=\"... dial tcp 10.0.0.1:6443: connect: no route to host\"\n")
    assert failure_cause(log)[0] == "server unreachable"
