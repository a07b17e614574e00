"""Every cross-field settings rule, each broken alone on an otherwise valid stack: the exact key path is reported."""
import copy
from itertools import combinations

import pytest

from infra.stack.stack_config import ORGANIZATION, SettingsError, load_stack, project_values, read_stack_file, stack_file

BASE = project_values(read_stack_file(stack_file("dev")))  # public API server limited to 203.0.113.0/24
WHERE = "Pulumi.dev.yaml: config.mlops-edge-kit:"


def problems(edit) -> list[str]:
    """The problems load_stack reports for the dev settings after `edit`, without the file/namespace prefix."""
    values = copy.deepcopy(BASE)
    edit(values)
    with pytest.raises(SettingsError) as err:
        load_stack(values, source="Pulumi.dev.yaml", env="dev", organization=ORGANIZATION)
    assert all(p.startswith(WHERE) for p in err.value.problems), err.value.problems
    return [p.removeprefix(WHERE) for p in err.value.problems]


def keys(found: list[str]) -> list[str]:
    return [p.split(": ", 1)[0] for p in found]


def network(**changes):
    def edit(values):
        values["network"].update(changes)
    return edit


def subnets(**changes):
    def edit(values):
        values["network"]["subnets"].update(changes)
    return edit


def cluster(**changes):
    def edit(values):
        values["cluster"].update(changes)
    return edit


def pool(key: str, name: str):
    def edit(values):
        values["cluster"][key]["name"] = name
    return edit


def test_the_base_settings_are_valid():
    stack = load_stack(copy.deepcopy(BASE), source="Pulumi.dev.yaml", env="dev", organization=ORGANIZATION)
    assert stack.settings.network.private_networking is False and stack.settings.cluster.authorized_ip_ranges


SUBNETS = {"aksNodes": "10.10.0.0/20", "privateEndpoints": "10.10.17.0/24"}


@pytest.mark.parametrize("first,second", list(combinations(SUBNETS, 2)))
def test_each_pair_of_overlapping_subnets_is_caught(first, second):
    found = problems(subnets(**{second: SUBNETS[first]}))
    assert keys(found) == [f"network.subnets.{first}"], found
    assert f"overlaps network.subnets.{second} ({SUBNETS[first]})" in found[0]


@pytest.mark.parametrize("changes", [
    {"aksNodes": "10.10.16.0/20"},  # the first subnet contains the second (10.10.17.0/24)
    {"privateEndpoints": "10.10.1.0/24"},  # the second lies inside the first (10.10.0.0/20)
])
def test_a_subnet_containing_or_inside_another_is_caught_in_either_direction(changes):
    found = problems(subnets(**changes))
    assert keys(found) == ["network.subnets.aksNodes"], found
    assert "overlaps network.subnets.privateEndpoints" in found[0]


@pytest.mark.parametrize("key", SUBNETS)
def test_each_subnet_outside_the_address_space_is_caught(key):
    found = problems(subnets(**{key: "10.99.0.0/24"}))
    assert keys(found) == [f"network.subnets.{key}"], found
    assert "outside the VNET address space 10.10.0.0/16" in found[0]


def test_a_subnet_partly_outside_the_address_space_is_caught():
    found = problems(network(addressSpace="10.10.0.0/20"))  # privateEndpoints now outside
    assert keys(found) == ["network.subnets.privateEndpoints"], found


@pytest.mark.parametrize("key,other,changes", [
    ("serviceCidr", "addressSpace", {"serviceCidr": "10.10.128.0/20", "dnsServiceIp": "10.10.128.10"}),
    ("podCidr", "addressSpace", {"podCidr": "10.10.64.0/18"}),
    ("podCidr", "serviceCidr", {"podCidr": "172.16.0.0/12"}),
    ("podCidr", "serviceCidr", {"podCidr": "172.16.128.0/17"}),
])
def test_cluster_ranges_must_not_overlap(key, other, changes):
    found = problems(network(**changes))
    assert keys(found) == [f"network.{key}"], found
    assert f"overlaps network.{other}" in found[0]


@pytest.mark.parametrize("dns", ["172.17.0.10", "10.10.0.10", "172.16.0.0"])
def test_dns_service_ip_must_be_a_host_inside_the_service_cidr(dns):
    found = problems(network(dnsServiceIp=dns))
    assert keys(found) == ["network.dnsServiceIp"], found
    assert dns in found[0] and "172.16.0.0/16" in found[0]


def test_an_authorized_range_of_slash_0_is_refused_by_position():
    found = problems(cluster(authorizedIpRanges=["203.0.113.0/24", "0.0.0.0/0"]))
    assert keys(found) == ["cluster.authorizedIpRanges[1]"], found
    assert "whole internet" in found[0]


def test_a_public_api_server_needs_authorized_ranges():
    assert keys(problems(cluster(authorizedIpRanges=[]))) == ["cluster.authorizedIpRanges"]


def test_authorized_ranges_are_refused_on_a_private_cluster():
    found = problems(network(privateNetworking=True))
    assert keys(found) == ["cluster.authorizedIpRanges"] and "no effect" in found[0], found


@pytest.mark.parametrize("key", ["x86Pool", "arm64Pool"])
def test_no_user_pool_may_be_called_system(key):
    found = problems(pool(key, "system"))
    assert keys(found) == [f"cluster.{key}.name"] and "'system'" in found[0], found


@pytest.mark.parametrize("key", ["x86Pool", "arm64Pool"])
@pytest.mark.parametrize("name", ["X86", "1pool", "a" * 13, "with-dash"])
def test_each_pool_name_follows_azures_rule(key, name):
    found = problems(pool(key, name))
    assert keys(found) == [f"cluster.{key}.name"] and "Linux node pool names" in found[0], found


def test_the_two_user_pools_need_different_names():
    found = problems(pool("arm64Pool", "x86"))
    assert keys(found) == ["cluster.arm64Pool.name"] and "also the x86 pool's name" in found[0], found


def test_every_broken_rule_is_reported_at_once():
    def edit(values):
        subnets(privateEndpoints="10.10.8.0/24")(values)
        network(podCidr="172.16.0.0/12", dnsServiceIp="172.17.0.10")(values)
        cluster(authorizedIpRanges=["0.0.0.0/0"])(values)
        pool("arm64Pool", "system")(values)
        pool("x86Pool", "system")(values)
    assert keys(problems(edit)) == ["network.subnets.aksNodes", "network.podCidr", "network.dnsServiceIp",
                                    "cluster.authorizedIpRanges[0]", "cluster.x86Pool.name", "cluster.arm64Pool.name",
                                    "cluster.arm64Pool.name"]


@pytest.mark.parametrize("lifecycle,key,message", [
    ({"protected": True, "ephemeral": True, "expiresAt": "2030-01-01T00:00:00Z"}, "lifecycle",
     "both protected and ephemeral"),
    ({"ephemeral": True}, "lifecycle", "needs expiresAt"),
])
def test_lifecycle_settings_must_be_consistent(lifecycle, key, message):
    def edit(values):
        values["lifecycle"] = lifecycle
    found = problems(edit)
    assert keys(found) == [key] and message in found[0], found


def test_the_system_pool_keeps_at_least_one_node():
    def edit(values):
        values["cluster"]["systemPool"]["minCount"] = 0
    assert keys(problems(edit)) == ["cluster.systemPool.minCount"]


def test_the_x86_pool_refuses_an_arm64_size():
    def edit(values):
        values["cluster"]["x86Pool"]["vmSize"] = "Standard_D8pds_v5"
    found = problems(edit)
    assert keys(found) == ["cluster.x86Pool.vmSize"] and "is an Arm64 VM size" in found[0], found
