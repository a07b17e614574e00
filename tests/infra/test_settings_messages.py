"""Each cross-field settings rule's whole message, as a user reads it (what `./kit mutate` found untested: the
key paths were checked, the words were not), and the plan's warnings for valid but risky settings."""
import copy
from datetime import date

import pytest

from infra.stack import settings_rules
from infra.stack.settings_rules import decidable_network_rules
from infra.stack.stack_config import ORGANIZATION, SettingsError, load_stack, project_values, read_stack_file, stack_file

DEV, QA = (project_values(read_stack_file(stack_file(env))) for env in ("dev", "qa"))


def problems(base: dict, env: str, edit) -> list[str]:
    values = copy.deepcopy(base)
    edit(values)
    with pytest.raises(SettingsError) as err:
        load_stack(values, source=f"Pulumi.{env}.yaml", env=env, organization=ORGANIZATION)
    return [p.removeprefix(f"Pulumi.{env}.yaml: config.mlops-edge-kit:") for p in err.value.problems]


def settings(base: dict, env: str, edit=lambda values: None):
    values = copy.deepcopy(base)
    edit(values)
    return load_stack(values, source=f"Pulumi.{env}.yaml", env=env, organization=ORGANIZATION).settings


def test_the_network_rules_say_which_range_collides_with_which():
    def edit(values):
        values["network"].update(podCidr="10.10.0.0/16", serviceCidr="10.10.64.0/18", dnsServiceIp="10.10.64.0")
        values["network"]["subnets"].update(privateEndpoints="10.11.0.0/24")
    assert problems(DEV, "dev", edit) == [
        "network.subnets.privateEndpoints: 10.11.0.0/24 is outside the VNET address space 10.10.0.0/16",
        "network.serviceCidr: 10.10.64.0/18 overlaps network.addressSpace (10.10.0.0/16)",
        "network.podCidr: 10.10.0.0/16 overlaps network.addressSpace (10.10.0.0/16)",
        "network.podCidr: 10.10.0.0/16 overlaps network.serviceCidr (10.10.64.0/18)",
        "network.dnsServiceIp: 10.10.64.0 must be a host address inside serviceCidr 10.10.64.0/18"]


def test_the_decidable_rules_run_on_whatever_parses_among_invalid_fields():
    raw = {"network": {"addressSpace": "10.10.0.0/16", "serviceCidr": "10.10.64.0/18", "podCidr": "not-a-cidr",
                       "dnsServiceIp": "10.0.0.300", "subnets": {"aksNodes": "10.10.0.0/20", "privateEndpoints": 7}}}
    assert decidable_network_rules(raw) == [
        ("network.serviceCidr", "10.10.64.0/18 overlaps network.addressSpace (10.10.0.0/16)")]
    assert decidable_network_rules({"network": "oops"}) == [] and decidable_network_rules({}) == []
    assert decidable_network_rules({"network": {"subnets": ["x"], "addressSpace": "10.0.0.0/8"}}) == []
    subnets_only = {"network": {"subnets": {"a": "10.0.0.0/24", "b": "10.0.0.128/25"}}}
    assert decidable_network_rules(subnets_only) == [("network.subnets.a", "10.0.0.0/24 overlaps network.subnets.b "
                                                                           "(10.0.0.128/25)")]
    dns = {"network": {"serviceCidr": "10.96.0.0/16", "dnsServiceIp": "10.97.0.10"}}
    assert decidable_network_rules(dns) == [("network.dnsServiceIp",
                                             "10.97.0.10 must be a host address inside serviceCidr 10.96.0.0/16")]


def test_the_exposure_rules_say_what_to_do():
    def private_with_ranges(values):
        values["network"]["privateNetworking"] = True
    def public_without(values):
        values["cluster"]["authorizedIpRanges"] = []
    def whole_internet(values):
        values["cluster"]["authorizedIpRanges"] = ["203.0.113.0/24", "0.0.0.0/0"]
    assert "cluster.authorizedIpRanges: has no effect with privateNetworking: true; remove it" in \
        problems(DEV, "dev", private_with_ranges)
    assert problems(DEV, "dev", public_without) == [
        "cluster.authorizedIpRanges: a public API server needs authorized IP ranges (or set "
        "network.privateNetworking: true)"]
    assert problems(DEV, "dev", whole_internet) == [
        "cluster.authorizedIpRanges[1]: 0.0.0.0/0 opens the API server to the whole internet"]


def test_the_pool_rules_name_the_pool():
    def system(values):
        values["cluster"]["x86Pool"]["name"] = "system"
    def same(values):
        values["cluster"]["arm64Pool"]["name"] = values["cluster"]["x86Pool"]["name"]
    assert problems(DEV, "dev", system) == ["cluster.x86Pool.name: 'system' is the system pool's name"]
    assert problems(DEV, "dev", same) == [f"cluster.arm64Pool.name: {DEV['cluster']['x86Pool']['name']!r} is also "
                                          "the x86 pool's name"]


def test_an_edge_site_without_registry_access_or_push_and_a_wide_egress_range_are_named():
    def no_access(values):
        values["registry"]["edgeSites"] = [s for s in values["registry"]["edgeSites"] if s["name"] != "qa"]
    def no_push(values):
        values["registry"]["edgeSites"][0].pop("push")
    def wide(values):
        values["registry"]["edgeSites"][1]["egressIps"] = ["198.51.100.30/32", "10.0.0.0/7"]
    assert problems(QA, "qa", no_access) == [
        "registry.edgeSites: edge site 'qa' has no way to the registry: add it with egressIps (its public egress "
        "addresses) and pull (the repositories it runs)"]
    assert problems(QA, "qa", no_push) == [
        "registry.edgeSites[0].push: edge site 'qa' runs agent pools (agents.edgeSites), which push the images they "
        "build: list those repositories"]
    assert problems(QA, "qa", wide) == [
        "registry.edgeSites[1].egressIps[1]: 10.0.0.0/7 opens the registry to far more than a site"]


def test_sites_of_disabled_agents_or_devops_need_no_registry_access():
    def off(values):
        values["registry"]["edgeSites"] = []
        values["agents"]["enabled"] = False
        values["devops"]["enabled"] = False
        del values["fleetReceiver"]  # it needs the sites' addresses (tests/infra/test_fleet_receiver.py)
    assert settings(QA, "qa", off).registry.edge_sites == []


def test_a_job_longer_than_aks_can_drain_is_refused_with_the_figures():
    def long_jobs(values):
        values["agents"]["jobTimeoutMinutes"] = 1436
    assert problems(QA, "qa", long_jobs) == [
        "agents.jobTimeoutMinutes: 1436 minutes is longer than AKS can wait to drain a node during upgrades (1440 "
        "minutes, less 5 for the pod's shutdown)"]
    def just_fits(values):
        values["agents"]["jobTimeoutMinutes"] = 1435
    assert settings(QA, "qa", just_fits).agents.job_timeout_minutes == 1435
    assert settings_rules.drain_timeout_minutes(60) == 65 and settings_rules.drain_timeout_minutes(None) is None


def test_local_accounts_off_with_the_azureml_attachment_is_refused_saying_why():
    def edit(values):
        values.setdefault("ml", {})["attachAks"] = True
        values["cluster"]["disableLocalAccounts"] = True
    assert problems(DEV, "dev", edit) == [
        "cluster.disableLocalAccounts: Microsoft documents that the AzureML extension does not support AKS with "
        "local accounts disabled, and ml.attachAks is on: remove disableLocalAccounts (or set ml.attachAks: false)"]


def test_the_plans_warnings_for_valid_but_risky_settings():
    def risky(values):
        values.setdefault("ml", {})["attachAks"] = True
        values["cluster"].pop("disableLocalAccounts", None)
        values["devops"] = {"enabled": False}
    notes = settings_rules.warnings(settings(QA, "qa", risky), date(2026, 12, 7))
    assert [n for n in notes if n.startswith("AKS keeps local accounts on")] == [
        "AKS keeps local accounts on because ml.attachAks is on: Microsoft documents that the AzureML extension does "
        "not support AKS with local accounts disabled (learn.microsoft.com/azure/machine-learning/"
        "how-to-deploy-kubernetes-extension#limitations); set ml.attachAks: false to turn them off"]
    assert "the AKS agents get no registry push credential from this stack (devops is off): pipelines that push from " \
           "them need a registry service connection of their own" in notes
    assert any(n.startswith("the AzureML control plane must reach the API server") for n in notes) == bool(
        settings(QA, "qa", risky).cluster.authorized_ip_ranges)
    def careful(values):
        values.setdefault("ml", {})["attachAks"] = False
    quiet = settings_rules.warnings(settings(QA, "qa", careful), date(2026, 12, 7))
    assert not [n for n in quiet if n.startswith(("AKS keeps", "the AKS agents get no"))]


def test_keda_is_noted_only_where_it_runs_and_the_pins_in_use_are_the_stacks():
    stack = settings(QA, "qa")
    assert settings_rules.pins_in_use(stack)["aks-kubernetes"] == stack.cluster.kubernetes_version
    notes = settings_rules.keda_notes(stack)
    assert [n for n in notes if "edge site qa" in n] and all("KEDA" in n for n in notes)
    def off(values):
        values["agents"]["enabled"] = False
    assert settings_rules.keda_notes(settings(QA, "qa", off)) == []


def test_the_private_networking_and_azureml_ip_range_notes_in_full():
    nat = ("the image-build compute cluster has no public IPs and the subnets no default outbound access: its subnet "
           "(network.subnets.aksNodes) goes out through the stack's NAT gateway, and so does the AKS nodes' outbound "
           "traffic (a subnet's NAT gateway takes precedence over the load balancer's outbound rules, "
           "learn.microsoft.com/azure/nat-gateway/nat-overview); allow its public IP where those destinations "
           "filter by address")
    assert nat in settings_rules.warnings(settings(QA, "qa"), date(2026, 12, 7))  # qa: privateNetworking: true
    def attach(values):
        values.setdefault("ml", {})["attachAks"] = True
        values["cluster"].pop("disableLocalAccounts", None)
    notes = settings_rules.warnings(settings(DEV, "dev", attach), date(2026, 12, 7))  # public, with IP ranges
    assert nat not in notes and "the AzureML control plane must reach the API server: add its IP ranges (both paired " \
        "regions) to cluster.authorizedIpRanges" in notes


def test_keda_is_noted_for_aks_only_with_agent_pools_that_install_it_and_per_edge_site_that_does():
    def newer_aks(values):
        values["cluster"]["kubernetesVersion"] = "1.36"  # past KEDA 2.20's tested 1.33-1.35
    def clusters(edit):
        notes = settings_rules.keda_notes(settings(QA, "qa", edit))
        return [n.split(" (Kubernetes")[0] for n in notes]
    assert clusters(newer_aks) == ["KEDA 2.20.2 on AKS", "KEDA 2.20.2 on edge site qa"]
    assert settings_rules.keda_notes(settings(QA, "qa", newer_aks))[0].startswith(
        "KEDA 2.20.2 on AKS (Kubernetes 1.36): KEDA 2.20 is tested on Kubernetes 1.33-1.35 only")
    def no_keda_anywhere(values):
        newer_aks(values)
        values["agents"]["installKeda"] = False
        values["agents"]["edgeSites"][0]["installKeda"] = False
    assert clusters(no_keda_anywhere) == []
    def edge_agents_only(values):
        newer_aks(values)
        values["agents"]["pools"] = []
    assert clusters(edge_agents_only) == ["KEDA 2.20.2 on edge site qa"]


def test_an_edge_site_devops_deploys_to_needs_registry_access_with_the_agents_off():
    def devops_only(values):
        values["agents"]["enabled"] = False
        values["registry"]["edgeSites"] = [s for s in values["registry"]["edgeSites"] if s["name"] != "qa"]
    assert problems(QA, "qa", devops_only) == [
        "registry.edgeSites: edge site 'qa' has no way to the registry: add it with egressIps (its public egress "
        "addresses) and pull (the repositories it runs)"]


def test_an_egress_range_of_a_slash_8_is_the_widest_a_site_may_open():
    def slash(bits):
        def edit(values):
            values["registry"]["edgeSites"][1]["egressIps"] = [f"10.0.0.0/{bits}"]
        return edit
    assert settings(QA, "qa", slash(8)).registry.edge_sites[1].egress_ips[0].prefixlen == 8
    assert problems(QA, "qa", slash(7)) == [
        "registry.edgeSites[1].egressIps[0]: 10.0.0.0/7 opens the registry to far more than a site"]


def test_the_drain_limit_concerns_aks_agent_pools_only():
    def long_jobs(edit):
        def apply(values):
            values["agents"]["jobTimeoutMinutes"] = 1436
            edit(values)
        return apply
    def agents_off(values):
        values["agents"]["enabled"] = False
    def edge_pools_only(values):
        values["agents"]["pools"] = []
    assert settings(QA, "qa", long_jobs(agents_off)).agents.job_timeout_minutes == 1436
    assert settings(QA, "qa", long_jobs(edge_pools_only)).agents.job_timeout_minutes == 1436


def test_the_decidable_rules_read_the_pod_cidr_among_invalid_fields():
    raw = {"network": {"addressSpace": "10.10.0.0/16", "serviceCidr": "nonsense", "podCidr": "10.10.128.0/17"}}
    assert decidable_network_rules(raw) == [
        ("network.podCidr", "10.10.128.0/17 overlaps network.addressSpace (10.10.0.0/16)")]


def test_a_bad_name_is_keyed_where_it_came_from_an_override_or_the_derived_names():
    def override(values):
        values["names"] = {"storageAccount": "Has_Caps"}
    assert problems(DEV, "dev", override) == [
        "names.storageAccount: storage account 'Has_Caps' is invalid: storage account names are 3-24 lowercase "
        "letters and digits"]
    # a derived name: the stack's name (a valid Pulumi stack name) goes into the AKS dnsPrefix as it is
    with pytest.raises(SettingsError) as err:
        load_stack(copy.deepcopy(DEV), source="Pulumi.edge_lab.yaml", env="edge_lab", organization=ORGANIZATION)
    prefix = DEV["namePrefix"]
    assert err.value.problems == [
        f"Pulumi.edge_lab.yaml: config.mlops-edge-kit:namePrefix: dns prefix '{prefix}-edge_lab' is invalid: AKS "
        "dnsPrefix is 1-54 letters, digits and hyphens, starting and ending alphanumeric"]


def test_the_receivers_example_digest_is_noted_until_a_real_one_is_pinned():
    zeros = ("fleetReceiver.image.digest is the example's zeros: build and push the kit's image (fleet/image/Dockerfile, "
             "docs/fleet.md \"The receiver on AKS\") and pin its digest before pulumi up")
    assert zeros in settings_rules.warnings(settings(QA, "qa"), date(2026, 12, 7))  # qa's file has the zeros
    def pinned(values):
        values["fleetReceiver"]["image"]["digest"] = "sha256:" + "0" * 63 + "1"
    assert zeros not in settings_rules.warnings(settings(QA, "qa", pinned), date(2026, 12, 7))


def test_the_receiver_admits_its_allow_from_else_every_edge_sites_egress_once():
    assert [str(c) for c in settings_rules.receiver_sources(settings(QA, "qa"))] == ["198.51.100.20/32",
                                                                                      "198.51.100.30/32"]
    def shared_egress(values):
        values["registry"]["edgeSites"][1]["egressIps"] = ["198.51.100.20/32"]
    assert [str(c) for c in settings_rules.receiver_sources(settings(QA, "qa", shared_egress))] == [
        "198.51.100.20/32"]
    def allow(values):
        values["fleetReceiver"]["allowFrom"] = ["192.0.2.0/28"]
    assert [str(c) for c in settings_rules.receiver_sources(settings(QA, "qa", allow))] == ["192.0.2.0/28"]


def test_the_receivers_ip_is_a_host_of_the_node_subnet_azure_does_not_reserve():
    def at(ip):
        def edit(values):
            values["fleetReceiver"] |= {"exposure": "internal", "loadBalancerIp": ip}
        return edit
    for ip in ("10.20.0.4", "10.20.15.254"):  # the first and last addresses Azure leaves to hosts in 10.20.0.0/20
        assert str(settings(QA, "qa", at(ip)).fleet_receiver.load_balancer_ip) == ip
    for ip in ("10.20.0.0", "10.20.0.3", "10.20.15.255"):
        assert problems(QA, "qa", at(ip)) == [
            f"fleetReceiver.loadBalancerIp: {ip} is one of the addresses Azure reserves in 10.20.0.0/20"], ip
    assert problems(QA, "qa", at("10.20.16.4")) == [
        "fleetReceiver.loadBalancerIp: 10.20.16.4 is outside network.subnets.aksNodes (10.20.0.0/20)"]


def test_the_receiver_must_admit_some_site_and_no_wider_than_a_slash_8():
    def nobody(values):
        values["registry"]["edgeSites"], values["agents"]["enabled"], values["devops"]["enabled"] = [], False, False
    assert problems(QA, "qa", nobody) == [
        "fleetReceiver.allowFrom: no site could report: give the addresses the sites' reports come from (or list "
        "the sites with their egressIps in registry.edgeSites)"]
    def allow(*cidrs):
        def edit(values):
            values["fleetReceiver"]["allowFrom"] = list(cidrs)
        return edit
    assert len(settings(QA, "qa", allow("192.0.2.0/28", "10.0.0.0/8")).fleet_receiver.allow_from) == 2
    assert problems(QA, "qa", allow("192.0.2.0/28", "8.0.0.0/7")) == [
        "fleetReceiver.allowFrom[1]: 8.0.0.0/7 opens the receiver to far more than the sites"]
