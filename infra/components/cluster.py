"""AKS: a hardened cluster with an inline, tainted system pool and separate x86 and arm64 user pools."""
import base64

import pulumi
from pulumi_azure_native import containerservice

from infra.access.kubelogin import convert_kubeconfig
from infra.components.placement import Placement
from infra.stack.settings import ClusterSettings, NetworkSettings, UserPool
from infra.stack.settings_rules import drain_timeout_minutes

SYSTEM_TAINT = "CriticalAddonsOnly=true:NoSchedule"
MAX_SURGE = "33%"  # Microsoft's production recommendation: learn.microsoft.com/azure/aks/upgrade-cluster
ARM64_TAINT = "kubernetes.io/arch=arm64:NoSchedule"


class AksCluster(pulumi.ComponentResource):
    """Entra ID + Azure RBAC, no local accounts, workload identity, Azure CNI overlay with Cilium network policy."""

    def __init__(self, name: str, *, placement: Placement, cluster_name: str, dns_prefix: str,
                 settings: ClusterSettings, network: NetworkSettings, node_subnet_id: pulumi.Input[str],
                 log_analytics_id: pulumi.Input[str], local_accounts_disabled: bool,
                 job_timeout_minutes: int | None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:AksCluster", name, None, opts)
        self.cluster = containerservice.ManagedCluster(
            cluster_name, **placement.args(), resource_name_=cluster_name, dns_prefix=dns_prefix,
            kubernetes_version=settings.kubernetes_version, sku={"name": "Base", "tier": settings.tier},
            identity={"type": "SystemAssigned"}, enable_rbac=True,
            disable_local_accounts=local_accounts_disabled,
            aad_profile={"managed": True, "enable_azure_rbac": True,
                         "admin_group_object_ids": [str(g) for g in settings.admin_group_object_ids]},
            oidc_issuer_profile={"enabled": True}, security_profile={"workload_identity": {"enabled": True}},
            auto_upgrade_profile={"upgrade_channel": "patch", "node_os_upgrade_channel": "NodeImage"},
            network_profile={"network_plugin": "azure", "network_plugin_mode": "overlay",
                             "network_dataplane": "cilium", "network_policy": "cilium",
                             "pod_cidr": str(network.pod_cidr), "service_cidr": str(network.service_cidr),
                             "dns_service_ip": str(network.dns_service_ip), "load_balancer_sku": "standard"},
            api_server_access_profile=_api_server_access(settings, network),
            addon_profiles={"omsagent": {"enabled": True, "config": {
                "logAnalyticsWorkspaceResourceID": log_analytics_id, "useAADAuth": "true"}}},
            agent_pool_profiles=[{
                "name": "system", "mode": "System", "os_type": "Linux", "os_sku": "AzureLinux",
                "type": "VirtualMachineScaleSets", "vm_size": settings.system_pool.vm_size,
                "count": settings.system_pool.min_count, "min_count": settings.system_pool.min_count,
                "max_count": settings.system_pool.max_count, "enable_auto_scaling": True,
                "availability_zones": settings.system_pool.zones or None, "enable_node_public_ip": False,
                "vnet_subnet_id": node_subnet_id, "node_taints": [SYSTEM_TAINT],
                "orchestrator_version": settings.kubernetes_version}],
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["agentPoolProfiles[0].count"]))
        upgrade = upgrade_settings(job_timeout_minutes)
        self.user_pools = {
            "x86": self._user_pool(cluster_name, settings.x86_pool, settings, node_subnet_id, placement, [], upgrade),
            "arm64": self._user_pool(cluster_name, settings.arm64_pool, settings, node_subnet_id, placement,
                                     [ARM64_TAINT], upgrade),
        }
        self.name = self.cluster.name
        self.id = self.cluster.id
        self.principal_id = self.cluster.identity.apply(lambda i: i.principal_id)
        self.kubelet_object_id = self.cluster.identity_profile.apply(lambda p: p["kubeletidentity"].object_id)
        server = "public" if network.private_networking and network.peerings else None
        kubeconfig = _user_kubeconfig(placement.resource_group, self.cluster.name, server)
        self.kubeconfig = pulumi.Output.secret(kubeconfig.apply(
            lambda config: convert_kubeconfig(config, settings.kubelogin.method, settings.kubelogin.client_id_text)))
        self.register_outputs({"clusterName": self.name, "kubeconfig": self.kubeconfig})

    def _user_pool(self, cluster_name: str, pool: UserPool, settings: ClusterSettings,
                   subnet_id: pulumi.Input[str], placement: Placement, taints: list[str],
                   upgrade: dict) -> containerservice.AgentPool:
        return containerservice.AgentPool(
            f"{cluster_name}-{pool.name}", resource_group_name=placement.resource_group,
            resource_name_=self.cluster.name, agent_pool_name=pool.name, mode="User", os_type="Linux",
            os_sku="AzureLinux", type="VirtualMachineScaleSets", vm_size=pool.vm_size, count=pool.min_count,
            min_count=pool.min_count, max_count=pool.max_count, enable_auto_scaling=True,
            availability_zones=pool.zones or None, enable_node_public_ip=False, vnet_subnet_id=subnet_id,
            node_labels=pool.labels, node_taints=[*taints, *pool.taints],
            orchestrator_version=settings.kubernetes_version, tags=placement.tags, upgrade_settings=upgrade,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["count"]))


def upgrade_settings(job_timeout_minutes: int | None) -> dict:
    """User pools' upgrade settings: surge, and a drain timeout the agents' job timeout fits in."""
    drain = drain_timeout_minutes(job_timeout_minutes)
    return {"max_surge": MAX_SURGE, **({"drain_timeout_in_minutes": drain} if drain else {})}


def _api_server_access(settings: ClusterSettings, network: NetworkSettings) -> dict:
    """Private: reached from the VNET, and from peered VNETs through the public FQDN, an A record in Azure public DNS
    that resolves to the API server's private endpoint (learn.microsoft.com/azure/aks/private-clusters: "AKS by
    default creates a private FQDN with a private DNS zone and an additional public FQDN with a corresponding A
    record in Azure public DNS"), so a peered VNET needs no link to the cluster's private DNS zone."""
    if network.private_networking:
        return {"enable_private_cluster": True, "enable_private_cluster_public_fqdn": bool(network.peerings)}
    return {"enable_private_cluster": False, "authorized_ip_ranges": [str(r) for r in settings.authorized_ip_ranges]}


def _user_kubeconfig(resource_group: pulumi.Input[str], cluster_name: pulumi.Output[str],
                     server_fqdn: str | None) -> pulumi.Output[str]:
    """The Entra ID (kubelogin) kubeconfig; ARM never returns it on the cluster resource itself. `server_fqdn`
    "public" asks for the public FQDN as the server, as `az aks get-credentials --public-fqdn` does
    (azure-cli acs/custom.py aks_get_credentials: serverType 'public')."""
    credentials = containerservice.list_managed_cluster_user_credentials_output(
        resource_group_name=resource_group, resource_name=cluster_name, format="exec", server_fqdn=server_fqdn)
    return credentials.kubeconfigs.apply(lambda configs: base64.b64decode(configs[0].value).decode())
