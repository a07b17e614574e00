"""The Azure DevOps side of qa, uat and prod, recorded through Pulumi mocks with the kit's own settings."""
import pytest

from agents.pool import capabilities
from infra.devops import identity
from infra.devops.names import devops_names, pool_arches
from infra.offline.devops_answers import devops_call, offline_resource
from infra.offline.mocks import stable_uuid
from infra.offline.policies import violations
from tests.devops.devops_plan import (AKS_KUBECONFIG, KIT_ENVS, KUBECONFIG, PAT, inputs_text, kit_blocks,
                                      kit_settings, platform_ids, record_devops, stack_tags)

DEVOPS = "azuredevops:index/"
ROLE = "azure-native:authorization:RoleAssignment"


def by_name(recording, typ: str) -> dict:
    return {r.name: r for r in recording.of_type(typ)}


@pytest.mark.parametrize("env", KIT_ENVS)
def test_a_pool_and_queue_per_agent_pool_of_the_env(kit_recordings, env):
    rec = kit_recordings[env]
    _, agents = kit_settings(env)
    pools = {r.inputs["name"]: r for r in rec.of_type(f"{DEVOPS}pool:Pool")}
    assert set(pools) == set(pool_arches(agents)) and len(pools) >= 3
    assert {arch for arch in pool_arches(agents).values()} >= {"amd64", "arm64"}
    queues = by_name(rec, f"{DEVOPS}queue:Queue")
    assert set(queues) == {f"queue-{name}" for name in pools}
    for name, pool in pools.items():
        assert pool.urn in queues[f"queue-{name}"].dependencies
        assert pool.inputs["autoProvision"] is False and pool.inputs["autoUpdate"] is False  # the image pins it
    queue_urns = {q.urn for q in queues.values()}
    authorized = [a for a in rec.of_type(f"{DEVOPS}pipelineAuthorization:PipelineAuthorization")
                  if a.inputs["type"] == "queue"]
    assert len(authorized) == len(pools)
    assert all(set(a.dependencies) & queue_urns for a in authorized)
    assert rec.outputs["devopsAgentPools"] == sorted(pools)
    assert rec.outputs["agentDemands"] == {pool: capabilities(arch) for pool, arch in pool_arches(agents).items()}


@pytest.mark.parametrize("env", KIT_ENVS)
def test_azure_connections_federate_with_the_pipeline_identity(kit_recordings, env):
    rec = kit_recordings[env]
    names = devops_names(kit_settings(env)[0], env)
    identity_client = stable_uuid(f"pipelines-{env}", "client")
    arm = by_name(rec, f"{DEVOPS}serviceEndpointAzureRM:ServiceEndpointAzureRM")[names.azure_connection]
    acr = by_name(rec, f"{DEVOPS}serviceEndpointAzureEcr:ServiceEndpointAzureEcr")[names.registry_connection]
    for endpoint in (arm, acr):
        assert endpoint.inputs["serviceEndpointAuthenticationScheme"] == "WorkloadIdentityFederation"
        assert endpoint.inputs["credentials"] == {"serviceprincipalid": identity_client}  # no key, no certificate
    assert arm.inputs["resourceGroup"] == platform_ids(env)["resourceGroupName"]
    assert acr.inputs["azurecrName"] == f"mlk{env}registry"
    credentials = rec.of_type("azure-native:managedidentity:FederatedIdentityCredential")
    assert all(c.inputs["audiences"] == ["api://AzureADTokenExchange"] for c in credentials)
    assert all(c.inputs["resourceName"] == f"pipelines-{env}" for c in credentials)
    # Each trusts exactly the subject Azure DevOps issues for one of the two connections.
    endpoint_ids = {stable_uuid(arm.type, arm.name), stable_uuid(acr.type, acr.name)}
    assert {c.inputs["subject"].rsplit("/", 1)[-1] for c in credentials} == endpoint_ids and len(credentials) == 2


@pytest.mark.parametrize("env", KIT_ENVS)
def test_the_identity_gets_least_privilege(kit_recordings, env):
    rec = kit_recordings[env]
    ids = platform_ids(env)
    grants = {(r.inputs["roleDefinitionId"].rsplit("/", 1)[-1], r.inputs["scope"]) for r in rec.of_type(ROLE)}
    namespace = kit_settings(env)[0].app_namespace
    assert {(identity.ACR_PUSH, ids["registryId"]), (identity.AKS_CLUSTER_USER, ids["clusterId"]),
            (identity.AKS_RBAC_WRITER, f"{ids['clusterId']}/namespaces/{namespace}"),
            (identity.KEY_VAULT_SECRETS_USER, f"{ids['registryId'].split('/providers/')[0]}/providers/"
                                              f"Microsoft.KeyVault/vaults/{ids['keyVaultName']}")} <= grants
    owner, contributor = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "b24988ac-6180-42a0-ab88-20f7382dd24c"
    assert not {role for role, _ in grants} & {owner, contributor}
    assert all(r.inputs["principalId"] == stable_uuid(f"pipelines-{env}", "principal") for r in rec.of_type(ROLE))


def test_later_environments_may_import_from_the_previous_registry_only(kit_recordings):
    for env, source in (("qa", None), ("uat", "qa"), ("prod", "uat")):
        rec = kit_recordings[env]
        pulls = [r.inputs["scope"] for r in rec.of_type(ROLE)
                 if r.inputs["roleDefinitionId"].endswith(identity.ACR_PULL)]
        definitions = rec.of_type("azure-native:authorization:RoleDefinition")
        if source is None:
            assert pulls == [] and definitions == []
            continue
        assert pulls == [platform_ids(source)["registryId"]]
        [definition] = definitions
        assert definition.inputs["permissions"] == [{"actions": identity.IMPORT_ACTIONS}]
        assert definition.inputs["assignableScopes"] == [platform_ids(env)["registryId"]]
        assert definition.inputs["roleName"] == f"ACR image importer (organization/mlops-edge-kit/{env})"


@pytest.mark.parametrize("env", KIT_ENVS)
def test_environment_with_approval_gate_where_configured(kit_recordings, env):
    rec = kit_recordings[env]
    settings = kit_settings(env)[0]
    [environment] = rec.of_type(f"{DEVOPS}environment:Environment")
    assert environment.inputs["name"] == {"qa": "qa", "uat": "uat", "prod": "production"}[env]
    checks = rec.of_type(f"{DEVOPS}checkApproval:CheckApproval")
    if env == "qa":
        assert checks == []
        return
    [check] = checks
    assert environment.urn in check.dependencies and check.inputs["targetResourceType"] == "environment"
    assert check.inputs["requesterCanApprove"] is False
    assert check.inputs["approvers"] == [stable_uuid("group-origin", a) for a in settings.approval.approvers]
    assert check.inputs["minimumRequiredApprovers"] == settings.approval.minimum_approvers


@pytest.mark.parametrize("env", KIT_ENVS)
def test_no_variable_group_links_the_private_key_vault_the_platform_group_names_it(kit_recordings, env):
    rec = kit_recordings[env]
    settings = kit_settings(env)[0]
    names = devops_names(settings, env)
    groups = {r.inputs["name"]: r for r in rec.of_type(f"{DEVOPS}variableGroup:VariableGroup")}
    assert set(groups) == {names.platform_variable_group}
    assert not any("keyVault" in group.inputs for group in groups.values()), "Azure DevOps cannot reach the vault"
    assert rec.outputs["devopsVariableGroups"] == [names.platform_variable_group]
    platform = groups[names.platform_variable_group]
    assert platform.inputs["allowAccess"] is False
    facts = {v["name"]: v["value"] for v in platform.inputs["variables"]}
    assert facts["keyVaultName"] == platform_ids(env)["keyVaultName"]
    assert facts["registryLoginServer"] == platform_ids(env)["registryLoginServer"]
    assert facts["clusterName"] == f"aks-mlk-{env}" and facts["appNamespace"] == settings.app_namespace
    assert ("promoteFromRegistryId" in facts) == (env != "qa")
    assert not any(v.get("isSecret") for v in platform.inputs["variables"])


@pytest.mark.parametrize("env", KIT_ENVS)
def test_the_pipeline_identity_reads_secrets_of_its_own_vault_and_nothing_broader(kit_recordings, env):
    ids = platform_ids(env)
    group = ids["registryId"].split("/providers/")[0]
    vault = f"{group}/providers/Microsoft.KeyVault/vaults/{ids['keyVaultName']}"
    grants = [(r.inputs["roleDefinitionId"].rsplit("/", 1)[-1], r.inputs["scope"])
              for r in kit_recordings[env].of_type(ROLE)]
    assert [g for g in grants if g[1] == vault or g[1].startswith(vault + "/")] == [
        (identity.KEY_VAULT_SECRETS_USER, vault)]
    assert [scope for role, scope in grants if role == identity.KEY_VAULT_SECRETS_USER] == [vault]
    # At resource group or subscription scope only Reader, which has no data actions: it reads no secret.
    broader = {role for role, scope in grants if "/providers/" not in scope}
    assert broader <= {identity.READER}, broader


@pytest.mark.parametrize("env", KIT_ENVS)
def test_edge_sites_get_kubernetes_connections_and_an_app_namespace(kit_recordings, env):
    rec = kit_recordings[env]
    settings, agents = kit_settings(env)
    assert settings.edge_sites, "every kit env deploys to its edge site"
    connections = by_name(rec, f"{DEVOPS}serviceEndpointKubernetes:ServiceEndpointKubernetes")
    assert set(connections) == {f"k3s-{site.name}" for site in settings.edge_sites}
    for site in settings.edge_sites:
        connection = connections[f"k3s-{site.name}"]
        assert connection.inputs["authorizationType"] == "Kubeconfig"
        assert connection.inputs["kubeconfig"] == {"kubeConfig": "[secret]", "acceptUntrustedCerts": False}
    namespaces = {r.name: r.inputs["metadata"] for r in rec.of_type("kubernetes:core/v1:Namespace")}
    assert set(namespaces) == {"aks-apps-namespace"} | {f"edge-{s.name}-apps-namespace" for s in settings.edge_sites}
    assert all(m["labels"]["pod-security.kubernetes.io/enforce"] == "restricted" for m in namespaces.values())


@pytest.mark.parametrize("env", KIT_ENVS)
def test_no_secret_in_cleartext(kit_recordings, env):
    text = inputs_text(kit_recordings[env])
    for secret in ("aks-token-c4e8a0f2b6d1", "edge-token-5b1d9f3e7a2c", PAT):
        assert secret not in text
    assert AKS_KUBECONFIG not in text and KUBECONFIG not in text


def test_a_pat_from_secret_config_reaches_only_the_provider_masked():
    devops, agents = kit_blocks("qa")
    rec = record_devops("qa", {**devops, "patSecretKey": "azdoAdminPat"}, agents)
    [provider] = rec.of_type("pulumi:providers:azuredevops")
    assert provider.inputs["personalAccessToken"] == "[secret]"
    assert provider.inputs["orgServiceUrl"] == devops["organizationUrl"]
    assert PAT not in inputs_text(rec)
    assert all(r.provider.startswith(provider.urn) for r in rec.resources if r.type.startswith(DEVOPS))


def test_without_a_pat_key_the_provider_reads_the_environment(kit_recordings):
    [provider] = kit_recordings["qa"].of_type("pulumi:providers:azuredevops")
    assert "personalAccessToken" not in provider.inputs


def test_a_pipeline_id_limits_every_authorization_to_that_pipeline():
    devops, agents = kit_blocks("uat")
    rec = record_devops("uat", {**devops, "pipelineId": 42}, agents)
    authorizations = rec.of_type(f"{DEVOPS}pipelineAuthorization:PipelineAuthorization")
    assert {a.inputs["type"] for a in authorizations} == {"queue", "endpoint", "variablegroup", "environment"}
    assert all(a.inputs["pipelineId"] == 42 for a in authorizations)


def test_without_a_pipeline_id_only_agent_queues_are_open_to_all_pipelines(kit_recordings):
    authorizations = kit_recordings["uat"].of_type(f"{DEVOPS}pipelineAuthorization:PipelineAuthorization")
    assert {a.inputs["type"] for a in authorizations} == {"queue"}
    assert all("pipelineId" not in a.inputs for a in authorizations)


@pytest.mark.parametrize("env", KIT_ENVS)
def test_the_kits_plan_policies_hold(kit_recordings, env):
    assert violations(kit_recordings[env], protected=env == "prod") == []
    [uai] = kit_recordings[env].of_type("azure-native:managedidentity:UserAssignedIdentity")
    assert uai.inputs["tags"] == stack_tags(env)


def test_disabled_declares_nothing():
    devops, agents = kit_blocks("qa")
    rec = record_devops("qa", {**devops, "enabled": False}, agents, secrets={})
    assert rec.resources == [] and rec.outputs == {}


def test_an_approver_given_by_origin_id_is_used_as_is():
    devops, agents = kit_blocks("prod")
    origin = "0b7c6a1e-2f3d-4e5a-9b8c-7d6e5f4a3b2c"
    approval = {"approvers": [origin, "Release Approvers"], "minimumApprovers": 1}
    rec = record_devops("prod", {**devops, "approval": approval}, agents)
    [check] = rec.of_type(f"{DEVOPS}checkApproval:CheckApproval")
    assert check.inputs["approvers"] == [origin, stable_uuid("group-origin", "Release Approvers")]


def test_a_contradiction_with_the_agents_settings_stops_the_deployment():
    devops, agents = kit_blocks("qa")
    with pytest.raises(ValueError, match="differs from agents.organizationUrl"):
        record_devops("qa", {**devops, "organizationUrl": "https://dev.azure.com/other"}, agents)


def test_offline_answers_cover_only_what_they_know():
    stack = "organization/mlops-edge-kit/qa"
    assert offline_resource("pulumi:pulumi:StackReference", "ref", {"name": stack}) == (
        stack, {"name": stack, "outputs": {"registryId": f"[registryId output of stack {stack}]"}})
    assert offline_resource("azure-native:storage:StorageAccount", "st", {}) is None
    assert devops_call("azure-native:authorization:getClientConfig", {}) is None
    pool_id, _ = offline_resource(f"{DEVOPS}pool:Pool", "pool-x", {"name": "x"})
    assert pool_id.isdigit()
