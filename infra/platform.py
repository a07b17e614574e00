"""The platform stack of one environment, composed from one component per concern."""
import pulumi
from pulumi_azure_native import resources

from agents.deploy import deploy_agents
from infra.devops.deploy import deploy_devops
from infra.access.roles import ClusterAdmins, PlatformAccess
from infra.components.cluster import ARM64_TAINT, AksCluster
from infra.components.diagnostics import Diagnostics
from infra.components.fleet_receiver import FleetReceiverDeployment
from infra.components.ml_attachment import MlAttachment
from infra.components.ml_workspace import IMAGE_BUILD_SUBNET, MlWorkspace
from infra.components.network import Network
from infra.components.observability import Observability
from infra.components.peering import VnetPeerings
from infra.components.placement import Placement
from infra.components.private_endpoint import PrivateNetwork
from infra.components.registry import Registry
from infra.stack.settings_rules import receiver_sources
from infra.stack.stack_config import Stack


def stack_tags(stack: Stack) -> dict[str, str]:
    """Tags on every taggable resource: who owns it, who pays, how it is managed, and when it expires."""
    settings = stack.settings
    tags = {"env": stack.env, "owner": settings.tags.owner, "cost-center": settings.tags.cost_center,
            "managed-by": "pulumi/mlops-edge-kit"}
    if settings.lifecycle.ephemeral:
        tags.update({"ephemeral": "true", "expires-at": settings.lifecycle.expires_at.isoformat()})
    return tags


def build_platform(stack: Stack, *, tenant_id: pulumi.Input[str], subscription_id: pulumi.Input[str],
                   deployer_object_id: pulumi.Input[str], deployer_type: pulumi.Input[str]) -> dict[str, pulumi.Input]:
    """Declare the environment; returns the stack outputs other stacks, agents and pipelines need."""
    settings, names = stack.settings, stack.names
    protect = settings.lifecycle.protected
    tags = stack_tags(stack)
    group = resources.ResourceGroup(names.resource_group, resource_group_name=names.resource_group,
                                    location=settings.location, tags=tags)
    placement = Placement(resource_group=group.name, location=settings.location, tags=tags)
    net = Network("network", placement=placement, vnet_name=names.vnet, settings=settings.network,
                  nat_subnets=(IMAGE_BUILD_SUBNET,) if settings.network.private_networking else ())
    if settings.network.peerings:
        VnetPeerings("peerings", resource_group=group.name, vnet=net.vnet, vnet_name=names.vnet,
                     subscription_id=subscription_id, peers=settings.network.peerings,
                     opts=pulumi.ResourceOptions(depends_on=[net]))
    private = (PrivateNetwork(subnet_id=net.subnet_ids["privateEndpoints"], vnet_id=net.vnet.id)
               if settings.network.private_networking else None)
    logs = Observability("observability", placement=placement, log_name=names.log_analytics,
                         insights_name=names.app_insights, retention_days=90 if protect else 30)
    registry = Registry("registry", placement=placement, registry_name=names.registry, private=private,
                        protect=protect, edge_sites=settings.registry.edge_sites)
    ml = MlWorkspace("ml-workspace", placement=placement, workspace_name=names.workspace,
                     storage_name=names.storage_account, vault_name=names.key_vault, tenant_id=tenant_id,
                     app_insights_id=logs.app_insights.id, registry_id=registry.id, private=private, protect=protect,
                     compute_subnet_id=net.subnet_ids[IMAGE_BUILD_SUBNET],
                     image_build_vm_size=settings.ml.image_build_vm_size)
    aks = AksCluster("aks", placement=placement, cluster_name=names.cluster, dns_prefix=names.dns_prefix,
                     settings=settings.cluster, network=settings.network, node_subnet_id=net.subnet_ids["aksNodes"],
                     log_analytics_id=logs.log_analytics.id, local_accounts_disabled=settings.local_accounts_disabled,
                     job_timeout_minutes=(settings.agents.job_timeout_minutes
                                          if settings.agents.enabled and settings.agents.pools else None))
    PlatformAccess("access", subscription_id=subscription_id, registry_id=registry.id,
                   kubelet_object_id=aks.kubelet_object_id, cluster_principal_id=aks.principal_id,
                   node_subnet_id=net.subnet_ids["aksNodes"], image_build_principal_id=ml.image_build_principal_id)
    Diagnostics("diagnostics", placement=placement, cluster_name=names.cluster, cluster_id=aks.id,
                workspace_id=logs.log_analytics.id,
                targets={"keyvault": ml.vault.id, "registry": registry.id, "workspace": ml.workspace.id,
                         "blob": pulumi.Output.concat(ml.storage.id, "/blobServices/default")})
    admins = ClusterAdmins("cluster-admins", subscription_id=subscription_id, cluster_id=aks.id,
                           deployer_object_id=deployer_object_id,
                           deployer_type=deployer_type,
                           admin_group_ids=[str(g) for g in settings.cluster.admin_group_object_ids],
                           kubeconfig=aks.kubeconfig)
    if settings.ml.attach_aks:
        MlAttachment("ml-aks", placement=placement, cluster_name=aks.name, cluster_id=aks.id,
                     workspace_name=ml.workspace.name, inference_tls=settings.ml.inference_tls,
                     kubeconfig=admins.kubeconfig,
                     depends_on=list(aks.user_pools.values()))
    outputs = {
        "resourceGroupName": group.name, "location": settings.location,
        "registryLoginServer": registry.login_server, "registryId": registry.id,
        "clusterName": aks.name, "clusterId": aks.id, "kubeconfig": admins.kubeconfig,
        "oidcIssuerUrl": aks.cluster.oidc_issuer_profile.apply(lambda p: p.issuer_url if p else None),
        "workspaceName": ml.workspace.name, "keyVaultName": ml.vault.name,
        "keyVaultUri": ml.vault.properties.vault_uri, "logAnalyticsWorkspaceId": logs.log_analytics.id,
        "subnetIds": net.subnet_ids, "vnetId": net.vnet.id,
    }
    if registry.edge_credentials is not None:
        outputs["edgeRegistryCredentials"] = registry.edge_credentials  # secret: {site: {server, username, password}}
    if settings.fleet_receiver:
        receiver = FleetReceiverDeployment(
            "fleet-receiver", settings=settings.fleet_receiver, resource_group=group.name, registry=registry.registry,
            kubeconfig=admins.kubeconfig, sources=[str(cidr) for cidr in receiver_sources(settings)],
            location=settings.location, name_prefix=settings.name_prefix)
        outputs["fleetReceiverAddress"] = receiver.address
    outputs |= deploy_devops(settings.devops, settings.agents, env=stack.env, platform=outputs, tags=tags)
    deploy_agents(settings.agents, cluster_kubeconfig=admins.kubeconfig, registry_login_server=registry.login_server,
                  parent=None, pool_taints={"amd64": [], "arm64": [ARM64_TAINT]},
                  pools_ready=outputs.get("devopsAgentPools"))
    return outputs
