"""Network: the VNET, its subnets (AKS nodes, private endpoints) and their NSGs.

Internal load balancers (the AzureML inference router) take the node subnet: the AzureML extension documents no
subnet setting (internalLoadBalancerProvider only), and cloud-provider-azure defaults an internal load balancer
without the azure-load-balancer-internal-subnet annotation to the cluster's subnet.

No subnet has default outbound access. When a subnet holds VMs that have no other way out (the private workspace's
image-build compute cluster: no public IPs, no load balancer), a NAT gateway with one Standard static public IP is
associated with it (learn.microsoft.com/azure/nat-gateway/nat-overview: a subnet's NAT gateway is its VMs'
outbound path, taking precedence over load balancer outbound rules and instance public IPs; nat-gateway-resource:
Standard SKU public IPs only).
"""
import pulumi
from pulumi_azure_native import network

from infra.components.placement import Placement
from infra.stack.settings import NetworkSettings

SUBNETS = {"aksNodes": "snet-aks-nodes", "privateEndpoints": "snet-private-endpoints"}


class Network(pulumi.ComponentResource):
    """A VNET whose subnets each carry an NSG; subnets are created one after another, as ARM requires."""

    def __init__(self, name: str, *, placement: Placement, vnet_name: str, settings: NetworkSettings,
                 nat_subnets: tuple[str, ...] = (), opts: pulumi.ResourceOptions | None = None):
        """`nat_subnets`: the SUBNETS keys whose VMs get outbound access through the VNET's NAT gateway."""
        super().__init__("mlops:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vnet = network.VirtualNetwork(
            vnet_name, **placement.args(), virtual_network_name=vnet_name,
            address_space={"address_prefixes": [str(settings.address_space)]}, opts=child)
        self.nat_gateway = self._nat_gateway(placement, vnet_name) if nat_subnets else None
        cidrs = settings.subnets.model_dump(by_alias=True)
        self.subnet_ids: dict[str, pulumi.Output[str]] = {}
        previous: list[pulumi.Resource] = []
        for key, subnet_name in SUBNETS.items():
            nsg = network.NetworkSecurityGroup(
                f"nsg-{subnet_name}", **placement.args(), network_security_group_name=f"nsg-{subnet_name}",
                opts=child)
            nat = {"nat_gateway": {"id": self.nat_gateway.id}} if key in nat_subnets else {}
            subnet = network.Subnet(
                subnet_name, resource_group_name=placement.resource_group, virtual_network_name=self.vnet.name,
                subnet_name=subnet_name, address_prefix=str(cidrs[key]), network_security_group={"id": nsg.id},
                default_outbound_access=False, **nat,
                private_endpoint_network_policies="Enabled" if key == "privateEndpoints" else "Disabled",
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous))
            self.subnet_ids[key] = subnet.id
            previous = [subnet]
        self.register_outputs({"vnetId": self.vnet.id, "subnetIds": self.subnet_ids})

    def _nat_gateway(self, placement: Placement, vnet_name: str) -> network.NatGateway:
        """A Standard NAT gateway (regional) with one Standard static IPv4 address."""
        suffix = vnet_name.removeprefix("vnet-")
        child = pulumi.ResourceOptions(parent=self)
        address = network.PublicIPAddress(
            f"pip-ng-{suffix}", **placement.args(), public_ip_address_name=f"pip-ng-{suffix}",
            sku={"name": "Standard", "tier": "Regional"}, public_ip_allocation_method="Static",
            public_ip_address_version="IPv4", opts=child)
        return network.NatGateway(
            f"ng-{suffix}", **placement.args(), nat_gateway_name=f"ng-{suffix}", sku={"name": "Standard"},
            public_ip_addresses=[{"id": address.id}], idle_timeout_in_minutes=4, opts=child)
