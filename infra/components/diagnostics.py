"""Where the platform's logs go: Container Insights' data collection rule, and resource logs to Log Analytics.

Container Insights with managed identity auth (omsagent `useAADAuth`) sends nothing until a data collection rule
of the ContainerInsights extension is associated with the cluster. Its shape is the one Microsoft documents and
the Azure CLI creates (learn.microsoft.com/azure/azure-monitor/containers/container-insights-data-collection-configure;
Azure/azure-cli src/azure-cli/azure/cli/command_modules/acs/azuremonitormetrics + addonconfiguration.py).
Resource log categories: learn.microsoft.com/azure/azure-monitor/reference/logs-index (resource-logs-categories).
"""
import pulumi
from pulumi_azure_native import monitor

from infra.components.placement import Placement

CONTAINER_INSIGHTS_STREAM = "Microsoft-ContainerInsights-Group-Default"
DESTINATION = "ciworkspace"
LOG_CATEGORIES = {
    "aks": ("kube-audit-admin", "guard"),  # API server writes, and Entra ID / Azure RBAC decisions
    "keyvault": ("AuditEvent",),
    "registry": ("ContainerRegistryLoginEvents", "ContainerRegistryRepositoryEvents"),
    "blob": ("StorageRead", "StorageWrite", "StorageDelete"),
    "workspace": ("AmlComputeClusterEvent", "AmlComputeJobEvent", "AmlRunStatusChangedEvent"),
}


class Diagnostics(pulumi.ComponentResource):
    """Container Insights' DCR and its association with the cluster; a diagnostic setting per target."""

    def __init__(self, name: str, *, placement: Placement, cluster_name: str, cluster_id: pulumi.Input[str],
                 workspace_id: pulumi.Input[str], targets: dict[str, pulumi.Input[str]],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:Diagnostics", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        rule = monitor.DataCollectionRule(
            f"{name}-container-insights", **placement.args(),
            data_collection_rule_name=f"MSCI-{placement.location}-{cluster_name}", kind="Linux",
            description="Container Insights for the cluster (managed identity auth)",
            data_sources={"extensions": [{
                "name": "ContainerInsightsExtension", "extension_name": "ContainerInsights",
                "streams": [CONTAINER_INSIGHTS_STREAM],
                "extension_settings": {"dataCollectionSettings": {
                    "interval": "1m", "namespaceFilteringMode": "Off", "enableContainerLogV2": True}}}]},
            destinations={"log_analytics": [{"name": DESTINATION, "workspace_resource_id": workspace_id}]},
            data_flows=[{"streams": [CONTAINER_INSIGHTS_STREAM], "destinations": [DESTINATION]}], opts=child)
        monitor.DataCollectionRuleAssociation(
            f"{name}-container-insights-association", association_name="ContainerInsightsExtension",
            resource_uri=cluster_id, data_collection_rule_id=rule.id,
            description="Container Insights data collection for the cluster", opts=child)
        for key, resource_id in {"aks": cluster_id, **targets}.items():
            monitor.DiagnosticSetting(
                f"{name}-{key}", name="to-log-analytics", resource_uri=resource_id, workspace_id=workspace_id,
                logs=[{"category": category, "enabled": True} for category in LOG_CATEGORIES[key]], opts=child)
        self.register_outputs({"dataCollectionRuleId": rule.id})
