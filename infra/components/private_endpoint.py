"""Private access to Azure services: an endpoint in the VNET and private DNS zones linked to it."""
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import network, privatedns

from infra.components.placement import Placement


@dataclass(frozen=True)
class PrivateService:
    """A service's private-link sub-resource and the DNS zones its names resolve in."""

    group_id: str
    dns_zones: tuple[str, ...]


REGISTRY = PrivateService("registry", ("privatelink.azurecr.io",))
STORAGE_BLOB = PrivateService("blob", ("privatelink.blob.core.windows.net",))
STORAGE_FILE = PrivateService("file", ("privatelink.file.core.windows.net",))
KEY_VAULT = PrivateService("vault", ("privatelink.vaultcore.azure.net",))
ML_WORKSPACE = PrivateService("amlworkspace", ("privatelink.api.azureml.ms", "privatelink.notebooks.azure.net"))


@dataclass(frozen=True)
class PrivateNetwork:
    """Where private endpoints go: the endpoints subnet of the environment's VNET."""

    subnet_id: pulumi.Input[str]
    vnet_id: pulumi.Input[str]


class PrivateLink(pulumi.ComponentResource):
    """Reach `target_id` privately from the VNET through `service`'s endpoint and DNS zones."""

    def __init__(self, name: str, *, placement: Placement, network_: PrivateNetwork,
                 target_id: pulumi.Input[str], service: PrivateService, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:PrivateLink", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zone_configs = []
        for zone_name in service.dns_zones:
            zone = privatedns.PrivateZone(
                f"{name}-{zone_name}", resource_group_name=placement.resource_group, private_zone_name=zone_name,
                location="global", tags=placement.tags, opts=child)
            privatedns.VirtualNetworkLink(
                f"{name}-{zone_name}-link", resource_group_name=placement.resource_group,
                private_zone_name=zone.name, virtual_network_link_name=f"link-{name}", location="global",
                registration_enabled=False, virtual_network={"id": network_.vnet_id}, tags=placement.tags,
                opts=child)
            zone_configs.append({"name": zone_name.replace(".", "-"), "private_dns_zone_id": zone.id})
        endpoint = network.PrivateEndpoint(
            f"{name}-pe", **placement.args(), private_endpoint_name=f"pe-{name}",
            subnet={"id": network_.subnet_id},
            private_link_service_connections=[{"name": f"{name}-{service.group_id}",
                                               "private_link_service_id": target_id,
                                               "group_ids": [service.group_id]}], opts=child)
        network.PrivateDnsZoneGroup(
            f"{name}-dns", resource_group_name=placement.resource_group, private_endpoint_name=endpoint.name,
            private_dns_zone_group_name="default", private_dns_zone_configs=zone_configs, opts=child)
        self.register_outputs({"endpointId": endpoint.id})
