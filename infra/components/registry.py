"""Container registry: Premium, admin user off, reached privately when private networking is on (and by the
edge sites' egress addresses, with a token each)."""
import pulumi
from pulumi_azure_native import containerregistry

from infra.components.edge_registry import EdgeRegistryAccess, network_rules
from infra.components.placement import Placement
from infra.stack.settings import EdgeSiteRegistry
from infra.components.private_endpoint import REGISTRY, PrivateLink, PrivateNetwork


class Registry(pulumi.ComponentResource):
    """The environment's image registry; pulls by managed identity only (AcrPull), never by admin password."""

    def __init__(self, name: str, *, placement: Placement, registry_name: str, private: PrivateNetwork | None,
                 protect: bool, edge_sites: list[EdgeSiteRegistry], opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:Registry", name, None, opts)
        rules = network_rules(edge_sites) if private else None  # a public registry is open to the sites anyway
        self.registry = containerregistry.Registry(
            registry_name, **placement.args(), registry_name=registry_name, sku={"name": "Premium"},
            admin_user_enabled=False, anonymous_pull_enabled=False,
            public_network_access="Disabled" if private and not rules else "Enabled", network_rule_set=rules,
            network_rule_bypass_options="AzureServices", opts=pulumi.ResourceOptions(parent=self, protect=protect))
        if private:
            PrivateLink(f"{registry_name}", placement=placement, network_=private, target_id=self.registry.id,
                        service=REGISTRY, opts=pulumi.ResourceOptions(parent=self))
        self.id = self.registry.id
        self.login_server = self.registry.login_server
        self.edge_credentials = EdgeRegistryAccess(
            f"{name}-edge", resource_group=placement.resource_group, registry=self.registry, sites=edge_sites,
            opts=pulumi.ResourceOptions(parent=self)).credentials if edge_sites else None
        self.register_outputs({"id": self.id, "loginServer": self.login_server})
