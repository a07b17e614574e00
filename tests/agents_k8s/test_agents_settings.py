"""AgentsSettings: defaults that deploy, and every mistake reported with its key path, all at once."""
import pytest
from pydantic import ValidationError

from agents.settings import AgentsSettings
from tests.agents_k8s.conftest import CLIENT_ID, SETTINGS, TENANT_ID


def errors(raw: dict) -> dict[str, str]:
    """key path -> message of every error pydantic reports."""
    with pytest.raises(ValidationError) as caught:
        AgentsSettings.model_validate(raw)
    return {".".join(str(part) for part in err["loc"]): err["msg"] for err in caught.value.errors()}


def test_the_sample_settings_are_valid_and_keep_camel_case_keys():
    settings = AgentsSettings.model_validate(SETTINGS)
    assert settings.pools[1].pool_name == "aks-arm64" and settings.edge_sites[0].pools[1].arch == "arm"
    assert settings.model_dump(by_alias=True)["edgeSites"][0]["kubeconfigSecretKey"] == "plant1Kubeconfig"


def test_disabled_agents_need_nothing_else():
    assert AgentsSettings.model_validate({"enabled": False}).image is None


def test_enabled_agents_need_an_organization_and_an_image():
    assert errors({}) == {"": "Value error, agents are enabled but organizationUrl and image are not set"}


def test_all_field_errors_are_reported_at_once_with_their_key_paths():
    raw = {**SETTINGS, "organizationUrl": "http://example.com/contoso", "image": {"tag": "latest"},
           "kedaVersion": "latest", "buildkitImage": "moby/buildkit:latest", "namespace": "Agents",
           "pollingIntervalSeconds": 1, "colour": "blue",
           "pools": [{"arch": "amd64", "poolName": "p", "resources": {"cpuLimit": "two"}},
                     {"arch": "arm64", "poolName": "q", "minReplicas": 3, "maxReplicas": 2}]}
    found = errors(raw)
    assert set(found) == {"organizationUrl", "image.tag", "kedaVersion", "buildkitImage", "namespace",
                          "pollingIntervalSeconds", "colour", "pools.0.resources.cpuLimit", "pools.1"}
    assert "dev.azure.com" in found["organizationUrl"] and "moving tag" in found["image.tag"]
    assert found["pools.1"] == "Value error, minReplicas (3) is greater than maxReplicas (2)"


def test_aks_runs_only_amd64_and_arm64_once_each():
    assert errors({**SETTINGS, "pools": [{"arch": "arm", "poolName": "p"}]}) == {
        "pools": "Value error, AKS runs only amd64 and arm64 agents, not arm"}
    twice = [{"arch": "amd64", "poolName": "a"}, {"arch": "amd64", "poolName": "b"}]
    assert errors({**SETTINGS, "pools": twice}) == {"pools": "Value error, architecture amd64 is listed more than once"}


def test_edge_sites_run_arm_agents_under_unique_names():
    site = {"name": "plant-2", "kubeconfigSecretKey": "plant2Kubeconfig", "pools": [{"arch": "amd64", "poolName": "x"}]}
    assert errors({**SETTINGS, "edgeSites": [site]}) == {
        "edgeSites.0.pools": "Value error, an edge site runs only arm64 and arm agents, not amd64"}
    same = SETTINGS["edgeSites"] * 2
    assert errors({**SETTINGS, "edgeSites": same}) == {
        "edgeSites": "Value error, edge site plant-1 is listed more than once"}
    assert set(errors({**SETTINGS, "edgeSites": [{"name": "p", "kubeconfigSecretKey": "k", "pools": []}]})) == {
        "edgeSites.0.pools"}


def test_entra_auth_needs_ids_and_is_refused_on_edge_sites():
    assert errors({**SETTINGS, "auth": {"mode": "sp", "clientId": CLIENT_ID}}) == {
        "auth": "Value error, mode sp needs tenantId"}
    entra = {"mode": "workload-identity", "clientId": CLIENT_ID, "tenantId": TENANT_ID}
    message = errors({**SETTINGS, "auth": entra})[""]
    assert "edgeSites need auth mode pat" in message and "workload-identity" in message
    assert AgentsSettings.model_validate({**SETTINGS, "auth": entra, "edgeSites": []}).auth.mode == "workload-identity"


def test_a_pool_name_serves_one_cluster_and_architecture():
    site = {**SETTINGS["edgeSites"][0], "pools": [{"arch": "arm64", "poolName": "aks-arm64"}]}
    message = errors({**SETTINGS, "edgeSites": [site]})[""]
    assert "pool aks-arm64 is served by more than one cluster or architecture" in message


def test_secret_config_keys_name_every_secret_the_deployment_reads():
    assert AgentsSettings.model_validate(SETTINGS).secret_config_keys() == ["azpToken", "plant1Kubeconfig"]
    sp = {"mode": "sp", "clientId": CLIENT_ID, "tenantId": TENANT_ID, "clientSecretKey": "spSecret"}
    assert AgentsSettings.model_validate({**SETTINGS, "auth": sp, "edgeSites": []}).secret_config_keys() == [
        "azpToken", "spSecret"]
    assert AgentsSettings(enabled=False).secret_config_keys() == []
