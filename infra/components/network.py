"""Network: the VNET, its subnets (AKS nodes, private endpoints) and their NSGs.

Internal load balancers (the AzureML inference router) take the node subnet: the AzureML extension documents no
subnet setting (internalLoadBalancerProvider only), and cloud-provider-azure defaults an internal load balancer
without the azure-load-balancer-internal-subnet annotation to the cluster's subnet.
"""
import pulumi
from pulumi_azure_native import network

from infra.components.placement import Placement
from infra.stack.settings import NetworkSettings

SUBNETS = {"aksNodes": "snet-aks-nodes", "privateEndpoints": "snet-private-endpoints"}


class Network(pulumi.ComponentResource):
    """A VNET whose subnets each carry an NSG; subnets are created one after another, as ARM requires."""

    def __init__(self, name: str, *, placement: Placement, vnet_name: str, settings: NetworkSettings,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vnet = network.VirtualNetwork(
            vnet_name, **placement.args(), virtual_network_name=vnet_name,
            address_space={"address_prefixes": [str(settings.address_space)]}, opts=child)
        cidrs = settings.subnets.model_dump(by_alias=True)
        self.subnet_ids: dict[str, pulumi.Output[str]] = {}
        previous: list[pulumi.Resource] = []
        for key, subnet_name in SUBNETS.items():
            nsg = network.NetworkSecurityGroup(
                f"nsg-{subnet_name}", **placement.args(), network_security_group_name=f"nsg-{subnet_name}",
                opts=child)
            subnet = network.Subnet(
                subnet_name, resource_group_name=placement.resource_group, virtual_network_name=self.vnet.name,
                subnet_name=subnet_name, address_prefix=str(cidrs[key]), network_security_group={"id": nsg.id},
                default_outbound_access=False,
                private_endpoint_network_policies="Enabled" if key == "privateEndpoints" else "Disabled",
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous))
            self.subnet_ids[key] = subnet.id
            previous = [subnet]
        self.register_outputs({"vnetId": self.vnet.id, "subnetIds": self.subnet_ids})
