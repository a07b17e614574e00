"""VNET peering both ways between this stack's VNET and the VNETs it is peered with (settings network.peerings).

Azure connects two VNETs only when each holds a peering to the other (learn.microsoft.com/azure/virtual-network/
virtual-network-manage-peering); the one in the peer's VNET is this stack's resource, so destroying the stack
removes both. Only the two VNETs' address spaces are joined: no forwarded traffic, no gateway transit.
"""
import pulumi
from pulumi_azure_native import network

from infra.stack.settings import PeeredNetwork

PEERING = {"allow_virtual_network_access": True, "allow_forwarded_traffic": False, "allow_gateway_transit": False,
           "use_remote_gateways": False}


class VnetPeerings(pulumi.ComponentResource):
    """A peering from `vnet` to each peer and one from each peer back to `vnet`."""

    def __init__(self, name: str, *, resource_group: pulumi.Input[str], vnet: network.VirtualNetwork, vnet_name: str,
                 subscription_id: pulumi.Input[str], peers: list[PeeredNetwork],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:VnetPeerings", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        for peer in peers:
            peer_id = pulumi.Output.concat("/subscriptions/", subscription_id, "/resourceGroups/", peer.resource_group,
                                           "/providers/Microsoft.Network/virtualNetworks/", peer.vnet)
            network.VirtualNetworkPeering(
                f"{vnet_name}-to-{peer.vnet}", resource_group_name=resource_group, virtual_network_name=vnet.name,
                virtual_network_peering_name=f"to-{peer.vnet}", remote_virtual_network={"id": peer_id}, **PEERING,
                opts=child)
            network.VirtualNetworkPeering(
                f"{peer.vnet}-to-{vnet_name}", resource_group_name=peer.resource_group, virtual_network_name=peer.vnet,
                virtual_network_peering_name=f"to-{vnet_name}", remote_virtual_network={"id": vnet.id}, **PEERING,
                opts=child)
        self.register_outputs({})
