"""Issue 20.5: the private workspace's image-build compute cluster has an outbound path (a NAT gateway with a
Standard public IP on its subnet), and the plan refuses a compute cluster in a subnet with no way out."""
import copy

import pytest

from infra.offline import policies

COMPUTE = "azure-native:machinelearningservices:Compute"
NAT = "azure-native:network:NatGateway"
IP = "azure-native:network:PublicIPAddress"
SUBNET = "azure-native:network:Subnet"


def builder(rec):
    (found,) = [c for c in rec.of_type(COMPUTE) if c.inputs["properties"]["computeType"] == "AmlCompute"]
    return found


def subnet_named(rec, name: str):
    (found,) = [s for s in rec.of_type(SUBNET) if s.inputs["subnetName"] == name]
    return found


@pytest.mark.parametrize("env", ["qa", "uat", "prod"])
def test_the_builders_subnet_goes_out_through_a_nat_gateway_with_a_standard_static_ip(recordings, env):
    rec = recordings[env]
    gateway, address = rec.one(NAT), rec.one(IP)
    assert gateway.inputs["sku"] == {"name": "Standard"}
    assert address.inputs["sku"]["name"] == "Standard" and address.inputs["publicIPAllocationMethod"] == "Static"
    assert address.inputs["publicIPAddressVersion"] == "IPv4"
    (attached,) = gateway.inputs["publicIpAddresses"]
    assert attached["id"].endswith(f"/publicIPAddresses/{address.inputs['publicIpAddressName']}")
    subnet = subnet_named(rec, builder(rec).inputs["properties"]["properties"]["subnet"]["id"].rsplit("/", 1)[-1])
    assert subnet.inputs["defaultOutboundAccess"] is False
    assert subnet.inputs["natGateway"]["id"].endswith(f"/natGateways/{gateway.inputs['natGatewayName']}")
    assert gateway.urn in subnet.dependencies
    assert "natGateway" not in subnet_named(rec, "snet-private-endpoints").inputs
    assert policies.violations(rec, protected=env == "prod") == []


def test_a_public_stack_has_no_builder_and_no_nat_gateway(recordings):
    rec = recordings["dev"]
    assert not rec.of_type(NAT) and not rec.of_type(IP)
    assert all(c.inputs["properties"]["computeType"] != "AmlCompute" for c in rec.of_type(COMPUTE))


def test_a_compute_cluster_in_a_subnet_with_no_way_out_is_a_policy_error(recordings):
    rec = copy.deepcopy(recordings["qa"])
    subnet_named(rec, "snet-aks-nodes").inputs.pop("natGateway")
    problems = "\n".join(policies.violations(rec, protected=False))
    assert (f"{COMPUTE} {builder(rec).name}: its subnet snet-aks-nodes has no default outbound access and no NAT "
            "gateway") in problems


def test_a_nat_gateway_without_a_standard_public_ip_is_no_way_out(recordings):
    rec = copy.deepcopy(recordings["qa"])
    rec.one(IP).inputs["sku"] = {"name": "Basic"}
    assert any("no NAT gateway with a Standard public IP" in p for p in policies.violations(rec, protected=False))
    rec = copy.deepcopy(recordings["qa"])
    rec.one(NAT).inputs["publicIpAddresses"] = []
    assert any("no NAT gateway with a Standard public IP" in p for p in policies.violations(rec, protected=False))
