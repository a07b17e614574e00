"""The Azure ML workspace with its storage account and key vault, secured by default."""
import pulumi
from pulumi_azure_native import keyvault, machinelearningservices, storage

from infra.components.placement import Placement
from infra.components.private_endpoint import KEY_VAULT, ML_WORKSPACE, STORAGE_BLOB, STORAGE_FILE, PrivateLink, PrivateNetwork

IMAGE_BUILD_COMPUTE = "image-build"
# The builder's subnet (the AKS nodes'): no default outbound access, so the network gives it a NAT gateway, its
# way to Entra ID, ARM, the AzureML services and the base images' registries (how-to-secure-training-vnet).
IMAGE_BUILD_SUBNET = "aksNodes"


class MlWorkspace(pulumi.ComponentResource):
    """Workspace (system-assigned identity) over a locked-down storage account and an RBAC-mode key vault."""

    def __init__(self, name: str, *, placement: Placement, workspace_name: str, storage_name: str,
                 vault_name: str, tenant_id: pulumi.Input[str], app_insights_id: pulumi.Input[str],
                 registry_id: pulumi.Input[str], private: PrivateNetwork | None, protect: bool,
                 compute_subnet_id: pulumi.Input[str], image_build_vm_size: str,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:MlWorkspace", name, None, opts)
        stateful = pulumi.ResourceOptions(parent=self, protect=protect)
        public_access = "Disabled" if private else "Enabled"
        self.storage = storage.StorageAccount(
            storage_name, **placement.args(), account_name=storage_name, kind="StorageV2",
            sku={"name": "Standard_ZRS" if protect else "Standard_LRS"}, minimum_tls_version="TLS1_2",
            enable_https_traffic_only=True, allow_blob_public_access=False, allow_shared_key_access=False,
            default_to_o_auth_authentication=True, public_network_access=public_access, opts=stateful)
        vault_properties = {"tenant_id": tenant_id, "sku": {"family": "A", "name": "standard"},
                            "enable_rbac_authorization": True, "enable_soft_delete": True,
                            "soft_delete_retention_in_days": 90 if protect else 7,
                            "public_network_access": public_access}
        if protect:
            vault_properties["enable_purge_protection"] = True
        self.vault = keyvault.Vault(vault_name, **placement.args(), vault_name=vault_name,
                                    properties=vault_properties, opts=stateful)
        self.workspace = machinelearningservices.Workspace(
            workspace_name, **placement.args(), workspace_name=workspace_name, kind="Default",
            identity={"type": "SystemAssigned"}, sku={"name": "Basic", "tier": "Basic"},
            storage_account=self.storage.id, key_vault=self.vault.id, application_insights=app_insights_id,
            container_registry=registry_id, system_datastores_auth_mode="identity",
            public_network_access=public_access, image_build_compute=IMAGE_BUILD_COMPUTE if private else None,
            opts=stateful)
        self.image_build_principal_id: pulumi.Output[str] | None = None
        if private:
            self._private_links(placement, private, {storage_name: self.storage, vault_name: self.vault,
                                                     workspace_name: self.workspace})
            builder = self._image_build_compute(placement, workspace_name, compute_subnet_id, image_build_vm_size)
            self.image_build_principal_id = builder.identity.apply(lambda i: i.principal_id)
        self.register_outputs({"workspaceName": self.workspace.name, "keyVaultUri": self.vault.properties.vault_uri})

    def _image_build_compute(self, placement: Placement, workspace_name: str, subnet_id: pulumi.Input[str],
                             vm_size: str) -> machinelearningservices.Compute:
        """A registry reached only privately cannot build images (ACR Tasks run outside the VNET), so AzureML
        builds them on this compute cluster in the VNET, 0 nodes when idle, no public IPs
        (learn.microsoft.com/azure/machine-learning/how-to-secure-workspace-vnet, "Enable Azure Container Registry")."""
        return machinelearningservices.Compute(
            f"{workspace_name}-{IMAGE_BUILD_COMPUTE}", resource_group_name=placement.resource_group,
            location=placement.location, tags=placement.tags, workspace_name=self.workspace.name,
            compute_name=IMAGE_BUILD_COMPUTE, identity={"type": "SystemAssigned"},
            properties={"compute_type": "AmlCompute", "disable_local_auth": True,
                        "description": "Builds the workspace's environment images inside the VNET",
                        "properties": {"vm_size": vm_size, "vm_priority": "Dedicated", "os_type": "Linux",
                                       "enable_node_public_ip": False, "remote_login_port_public_access": "Disabled",
                                       "subnet": {"id": subnet_id},
                                       "scale_settings": {"min_node_count": 0, "max_node_count": 2,
                                                          "node_idle_time_before_scale_down": "PT10M"}}},
            opts=pulumi.ResourceOptions(parent=self))

    def _private_links(self, placement: Placement, private: PrivateNetwork,
                       resources: dict[str, pulumi.CustomResource]) -> None:
        storage_name, vault_name, workspace_name = resources
        targets = [(storage_name, STORAGE_BLOB), (storage_name, STORAGE_FILE), (vault_name, KEY_VAULT),
                   (workspace_name, ML_WORKSPACE)]
        for name, service in targets:
            PrivateLink(f"{name}-{service.group_id}", placement=placement, network_=private,
                        target_id=resources[name].id, service=service, opts=pulumi.ResourceOptions(parent=self))
