"""Issue 8.7: Container Insights (managed identity) has its data collection rule; resource logs reach Log Analytics."""
import pytest

from tests.infra.conftest import ENVS

DCR = "azure-native:monitor:DataCollectionRule"
DCRA = "azure-native:monitor:DataCollectionRuleAssociation"
SETTING = "azure-native:monitor:DiagnosticSetting"


@pytest.mark.parametrize("env", ENVS)
def test_container_insights_with_aad_auth_has_its_rule_and_association(recordings, env):
    rec = recordings[env]
    cluster = rec.one("azure-native:containerservice:ManagedCluster")
    logs = rec.one("azure-native:operationalinsights:Workspace")
    assert cluster.inputs["addonProfiles"]["omsagent"]["config"]["useAADAuth"] == "true"
    rule = rec.one(DCR).inputs
    assert rule["kind"] == "Linux" and rule["dataCollectionRuleName"] == f"MSCI-westeurope-aks-mlk-{env}"
    (extension,) = rule["dataSources"]["extensions"]
    assert extension["extensionName"] == "ContainerInsights"
    assert extension["streams"] == ["Microsoft-ContainerInsights-Group-Default"]
    (destination,) = rule["destinations"]["logAnalytics"]
    assert destination["workspaceResourceId"].endswith(f"/workspaces/{logs.inputs['workspaceName']}")
    assert rule["dataFlows"] == [{"streams": extension["streams"], "destinations": [destination["name"]]}]
    association = rec.one(DCRA).inputs
    assert association["associationName"] == "ContainerInsightsExtension"
    assert association["resourceUri"].endswith(f"/managedClusters/{cluster.inputs['resourceName']}")
    assert association["dataCollectionRuleId"].endswith(f"/dataCollectionRules/{rule['dataCollectionRuleName']}")


@pytest.mark.parametrize("env", ENVS)
def test_resource_logs_of_every_service_go_to_log_analytics(recordings, env):
    rec = recordings[env]
    settings = {s.inputs["resourceUri"].split("/providers/", 1)[1].split("/")[0]: s.inputs
                for s in rec.of_type(SETTING)}
    categories = {k: {log["category"] for log in v["logs"]} for k, v in settings.items()}
    assert "kube-audit-admin" in categories["Microsoft.ContainerService"]
    assert categories["Microsoft.KeyVault"] == {"AuditEvent"}
    assert "ContainerRegistryLoginEvents" in categories["Microsoft.ContainerRegistry"]
    assert {"StorageRead", "StorageWrite", "StorageDelete"} == categories["Microsoft.Storage"]
    assert settings["Microsoft.Storage"]["resourceUri"].endswith("/blobServices/default")
    assert "AmlComputeJobEvent" in categories["Microsoft.MachineLearningServices"]
    for setting in settings.values():
        assert setting["workspaceId"].endswith(f"/workspaces/log-mlk-{env}")
        assert all(log["enabled"] is True for log in setting["logs"])
