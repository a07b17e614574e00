"""Observability: a Log Analytics workspace and workspace-based Application Insights."""
import pulumi
from pulumi_azure_native import applicationinsights, operationalinsights

from infra.components.placement import Placement


class Observability(pulumi.ComponentResource):
    """Logs for AKS (Container Insights) and telemetry for the ML workspace."""

    def __init__(self, name: str, *, placement: Placement, log_name: str, insights_name: str,
                 retention_days: int, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.log_analytics = operationalinsights.Workspace(
            log_name, **placement.args(), workspace_name=log_name,
            sku={"name": "PerGB2018"}, retention_in_days=retention_days, opts=child)
        self.app_insights = applicationinsights.Component(
            insights_name, **placement.args(), resource_name_=insights_name,
            kind="web", application_type="web", ingestion_mode="LogAnalytics",
            workspace_resource_id=self.log_analytics.id, opts=child)
        self.register_outputs({"logAnalyticsId": self.log_analytics.id, "appInsightsId": self.app_insights.id})
