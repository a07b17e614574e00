"""DevOpsSettings: what a stack file may say under mlops-edge-kit:devops, and what it is refused for."""
import pytest
from pydantic import ValidationError

from agents.settings import AgentsSettings
from infra.devops.names import devops_names
from infra.devops.settings import DevOpsSettings, agents_disagreements
from tests.devops.devops_plan import KIT_ENVS, kit_blocks, kit_settings

ENABLED = {"enabled": True, "organizationUrl": "https://dev.azure.com/contoso", "project": "mlops"}
AGENTS = {"organizationUrl": "https://dev.azure.com/contoso", "image": {"tag": "4.258.1-1"}}


def problems(data: dict) -> dict[str, str]:
    """Key path -> message of every validation error."""
    with pytest.raises(ValidationError) as caught:
        DevOpsSettings.model_validate(data)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in caught.value.errors()}


@pytest.mark.parametrize("env", KIT_ENVS)
def test_the_kit_configs_are_valid_and_agree_with_the_agents(env):
    devops, agents = kit_settings(env)
    assert devops.enabled and agents_disagreements(devops, agents) == []
    assert devops.secret_config_keys(agents) == [s.kubeconfig_secret_key for s in agents.edge_sites
                                                 if s.name in {t.name for t in devops.edge_sites}]


def test_disabled_by_default_and_then_needs_nothing():
    settings = DevOpsSettings()
    assert settings.enabled is False and settings.secret_config_keys(AgentsSettings(enabled=False)) == []


def test_enabled_without_the_essentials_names_them_all():
    assert list(problems({"enabled": True}).values()) == [
        "Value error, devops is enabled but organizationUrl, project are not set"]


def test_every_wrong_field_is_reported_at_once():
    found = problems({**ENABLED, "organizationUrl": "https://example.com/contoso", "appNamespace": "Not_A_Label",
                      "pipelineId": 0, "promoteFrom": "prod", "unknownKey": 1,
                      "approval": {"approvers": ["alice", "alice"], "minimumApprovers": 3},
                      "edgeSites": [{"name": "qa", "apiServerUrl": "http://qa:6443"}, {"name": "qa",
                                                                                      "apiServerUrl": "https://qa"}]})
    assert {"organizationUrl", "appNamespace", "pipelineId", "promoteFrom", "unknownKey",
            "approval.approvers", "edgeSites.0.apiServerUrl"} <= set(found)
    assert "listed more than once" in found["approval.approvers"]
    assert "is not an Azure DevOps organization URL" in found["organizationUrl"]


def test_more_required_approvals_than_approvers_is_refused():
    found = problems({**ENABLED, "approval": {"approvers": ["Release Approvers"], "minimumApprovers": 2}})
    assert "minimumApprovers (2) is more than the 1 approver(s) listed" in found["approval"]


def test_an_edge_site_listed_twice_is_refused():
    site = {"name": "qa", "apiServerUrl": "https://qa-edge.example.internal:6443"}
    assert "edge site qa is listed more than once" in problems({**ENABLED, "edgeSites": [site, site]})["edgeSites"]


def test_settings_are_immutable():
    settings = DevOpsSettings.model_validate(ENABLED)
    with pytest.raises(ValidationError):
        settings.project = "other"


def test_environment_names_follow_the_pipeline_templates():
    settings = DevOpsSettings.model_validate(ENABLED)
    assert [devops_names(settings, env).environment for env in ("qa", "uat", "prod")] == ["qa", "uat", "production"]
    assert devops_names(settings.model_copy(update={"environment": "staging"}), "uat").environment == "staging"


def test_disagreements_with_the_agents_name_the_key():
    agents = AgentsSettings.model_validate({**AGENTS, "edgeSites": [
        {"name": "qa", "kubeconfigSecretKey": "edgeKubeconfigQa", "pools": [{"arch": "arm64", "poolName": "e"}]}]})
    devops = DevOpsSettings.model_validate({**ENABLED, "organizationUrl": "https://dev.azure.com/fabrikam",
                                            "edgeSites": [
        {"name": "qa", "kubeconfigSecretKey": "otherKey", "apiServerUrl": "https://qa:6443"},
        {"name": "lab", "apiServerUrl": "https://lab:6443"}]})
    found = dict(agents_disagreements(devops, agents))
    assert set(found) == {"devops.organizationUrl", "devops.edgeSites[0].kubeconfigSecretKey",
                          "devops.edgeSites[1].kubeconfigSecretKey"}
    assert "agents.edgeSites has no site named lab" in found["devops.edgeSites[1].kubeconfigSecretKey"]


def test_an_edge_site_without_its_own_key_takes_the_agents_one():
    devops, agents = kit_blocks("prod")
    settings = DevOpsSettings.model_validate(devops)
    keys = settings.kubeconfig_keys(AgentsSettings.model_validate(agents))
    assert keys == {"production": "edgeKubeconfigProduction"}


@pytest.mark.parametrize("group", [{"secrets": ["smoke-test-api-key"]}, {"name": "mlops-qa", "secrets": ["x"]}, None])
def test_a_key_vault_linked_variable_group_is_refused_naming_the_key(group):
    found = problems({**ENABLED, "variableGroup": group})
    assert set(found) == {"variableGroup"}
    assert "cannot reach a private key vault" in found["variableGroup"] and "AzureKeyVault@2" in found["variableGroup"]


def test_the_plan_stops_on_a_linked_variable_group_naming_file_and_key(tmp_path):
    import shutil

    import yaml

    from infra.offline.plan import PlanError, record_env
    from tests.devops.devops_plan import ROOT
    stack = yaml.safe_load((ROOT / "Pulumi.qa.yaml").read_text())
    stack["config"]["mlops-edge-kit:devops"]["variableGroup"] = {"secrets": ["smoke-test-api-key"]}
    (tmp_path / "Pulumi.qa.yaml").write_text(yaml.safe_dump(stack))
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    with pytest.raises(PlanError) as caught:
        record_env("qa", root=tmp_path)
    assert [p for p in caught.value.problems
            if p.startswith("Pulumi.qa.yaml: config.mlops-edge-kit:devops.variableGroup: is no longer supported")]
