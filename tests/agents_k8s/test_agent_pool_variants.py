"""Other shapes of the same component: workload identity, KEDA already present, agents disabled, taints."""
import pytest
from pulumi.config import ConfigMissingError

from agents.pool import tolerations
from tests.agents_k8s.conftest import CLIENT_ID, SETTINGS, TENANT_ID, as_text, record_agents


def test_workload_identity_uses_no_secret_and_federates_keda():
    plan = record_agents({**SETTINGS, "edgeSites": [],
                          "auth": {"mode": "workload-identity", "clientId": CLIENT_ID, "tenantId": TENANT_ID}})
    inputs = {(r.inputs.get("kind"), r.inputs.get("metadata", {}).get("name")): r.inputs for r in plan.resources}
    assert not plan.of_type("kubernetes:core/v1:Secret")
    account = inputs[("ServiceAccount", "azp-agent")]
    assert account["metadata"]["annotations"] == {"azure.workload.identity/client-id": CLIENT_ID}
    assert account["automountServiceAccountToken"] is False
    assert inputs[("TriggerAuthentication", "azp-trigger-auth")]["spec"] == {
        "podIdentity": {"provider": "azure-workload", "identityId": CLIENT_ID}}
    template = inputs[("ScaledJob", "azp-agent-amd64")]["spec"]["jobTargetRef"]["template"]
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
    assert "AZP_TOKEN_FILE" not in env and env["AZP_AUTH"] == "workload-identity" and env["AZP_CLIENT_ID"] == CLIENT_ID
    assert not any(v.get("secret") for v in template["spec"]["volumes"])
    release = plan.one("kubernetes:helm.sh/v3:Release")
    assert release.inputs["values"]["podIdentity"] == {"azureWorkload": {
        "enabled": True, "clientId": CLIENT_ID, "tenantId": TENANT_ID}}


def test_no_keda_release_where_the_cluster_has_keda():
    plan = record_agents({**SETTINGS, "installKeda": False,
                          "edgeSites": [{**SETTINGS["edgeSites"][0], "installKeda": False}]})
    assert not plan.of_type("kubernetes:helm.sh/v3:Release")
    assert len(plan.of_type("kubernetes:keda.sh/v1alpha1:ScaledJob")) == 4


def test_disabled_agents_register_nothing():
    plan = record_agents({"enabled": False})
    assert plan.resources == [] and plan.outputs["agentPools"] == []


def test_tolerations_follow_the_taint_syntax_and_refuse_the_system_pool():
    assert tolerations(["sku=gpu:NoSchedule", "dedicated:NoExecute"]) == [
        {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]
    with pytest.raises(ValueError, match="system pool"):
        tolerations(["CriticalAddonsOnly=true:NoSchedule"])
    with pytest.raises(ValueError, match="key=value:Effect"):
        tolerations(["NoSchedule"])


def test_service_principal_mode_keeps_the_client_secret_not_the_pat_in_the_cluster():
    sp = {**SETTINGS, "edgeSites": [], "auth": {"mode": "sp", "clientId": CLIENT_ID, "tenantId": TENANT_ID,
                                                "clientSecretKey": "agentsSpSecret"}}
    with pytest.raises(ConfigMissingError, match="mlops-edge-kit:agentsSpSecret"):
        record_agents(sp)
    plan = record_agents(sp, {"mlops-edge-kit:agentsSpSecret": "sp-secret-0c1d"})
    assert "sp-secret-0c1d" not in as_text(plan)
    secret = plan.one("kubernetes:core/v1:Secret")
    assert secret.inputs["metadata"]["name"] == "azp-credential"
    (job,) = [r.inputs for r in plan.of_type("kubernetes:keda.sh/v1alpha1:ScaledJob") if r.name.endswith("amd64")]
    env = {e["name"]: e.get("value") for e in job["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AZP_AUTH"] == "sp" and env["AZP_TENANT_ID"] == TENANT_ID and "AZP_TOKEN_FILE" in env
