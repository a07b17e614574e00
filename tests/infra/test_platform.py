"""The real platform program, run under Pulumi's mock runtime with each environment's real config."""
import re

import pytest

from infra.offline.mocks import stable_uuid
from infra.offline.policies import REQUIRED_TAGS, taggable
from infra.stack.settings import ARM64_VM_SIZE
from tests.infra.conftest import ENVS

PROTECTED = {"prod"}


def test_every_environment_has_a_stack_file():
    assert {"dev", "qa", "uat", "prod"} <= set(ENVS)


@pytest.mark.parametrize("env", ENVS)
def test_components_and_their_children(recordings, env):
    rec = recordings[env]
    components = {r.type: r for r in rec.resources if not r.custom and r.type.startswith("mlops:")}
    for token in ("mlops:infra:Network", "mlops:infra:Observability", "mlops:infra:Registry",
                  "mlops:infra:MlWorkspace", "mlops:infra:AksCluster", "mlops:infra:PlatformAccess",
                  "mlops:infra:MlAttachment"):
        assert token in components, token
    parent_of = {r.type: r.parent for r in rec.resources}
    assert parent_of["azure-native:containerservice:ManagedCluster"] == components["mlops:infra:AksCluster"].urn
    assert parent_of["azure-native:storage:StorageAccount"] == components["mlops:infra:MlWorkspace"].urn
    assert parent_of["azure-native:network:VirtualNetwork"] == components["mlops:infra:Network"].urn


@pytest.mark.parametrize("env", ENVS)
def test_network_subnets_each_with_an_nsg(recordings, env):
    rec = recordings[env]
    subnets = rec.of_type("azure-native:network:Subnet")
    assert sorted(s.name for s in subnets) == ["snet-aks-nodes", "snet-private-endpoints"]
    for subnet in subnets:
        assert subnet.inputs["networkSecurityGroup"]["id"].endswith(f"nsg-{subnet.name}")
        assert subnet.inputs["defaultOutboundAccess"] is False


@pytest.mark.parametrize("env", ENVS)
def test_ml_workspace_and_its_dependencies(recordings, env):
    rec = recordings[env]
    ws = rec.one("azure-native:machinelearningservices:Workspace").inputs
    storage = rec.one("azure-native:storage:StorageAccount").inputs
    vault = rec.one("azure-native:keyvault:Vault").inputs
    registry = rec.one("azure-native:containerregistry:Registry").inputs
    insights = rec.one("azure-native:applicationinsights:Component").inputs
    logs = rec.one("azure-native:operationalinsights:Workspace")
    assert ws["identity"] == {"type": "SystemAssigned"}
    assert ws["storageAccount"].endswith(f"/storageAccounts/{storage['accountName']}")
    assert ws["keyVault"].endswith(f"/vaults/{vault['vaultName']}")
    assert ws["containerRegistry"].endswith(f"/registries/{registry['registryName']}")
    assert ws["applicationInsights"].endswith(f"/components/{insights['resourceName']}")
    assert insights["workspaceResourceId"].endswith(f"/workspaces/{logs.inputs['workspaceName']}")
    assert storage["minimumTlsVersion"] == "TLS1_2" and storage["allowBlobPublicAccess"] is False
    assert vault["properties"]["enableRbacAuthorization"] is True
    assert registry["sku"] == {"name": "Premium"} and registry["adminUserEnabled"] is False


@pytest.mark.parametrize("env", ENVS)
def test_purge_protection_and_protect_only_on_protected_envs(recordings, env):
    rec = recordings[env]
    protected = env in PROTECTED
    vault = rec.one("azure-native:keyvault:Vault")
    assert vault.inputs["properties"].get("enablePurgeProtection", False) is protected
    for typ in ("azure-native:machinelearningservices:Workspace", "azure-native:storage:StorageAccount",
                "azure-native:keyvault:Vault", "azure-native:containerregistry:Registry"):
        assert rec.one(typ).protect is protected, typ
    assert not any(r.protect for r in rec.of_type("azure-native:containerservice:ManagedCluster"))


@pytest.mark.parametrize("env", ENVS)
def test_private_networking_gives_private_endpoints(recordings, env):
    rec = recordings[env]
    registry = rec.one("azure-native:containerregistry:Registry").inputs
    endpoints = rec.of_type("azure-native:network:PrivateEndpoint")
    groups = {e.inputs["privateLinkServiceConnections"][0]["groupIds"][0] for e in endpoints}
    cluster = rec.one("azure-native:containerservice:ManagedCluster").inputs
    if env == "dev":
        assert not endpoints and registry["publicNetworkAccess"] == "Enabled"
        assert cluster["apiServerAccessProfile"]["authorizedIPRanges"] == ["203.0.113.0/24"]
    else:
        assert groups == {"registry", "blob", "file", "vault", "amlworkspace"}
        # public only for the edge sites' egress addresses (tests/infra/test_edge_registry.py)
        assert registry["publicNetworkAccess"] == "Enabled" and registry["networkRuleSet"]["defaultAction"] == "Deny"
        assert cluster["apiServerAccessProfile"]["enablePrivateCluster"] is True


@pytest.mark.parametrize("env", ENVS)
def test_aks_cluster_is_hardened(recordings, env):
    cluster = recordings[env].one("azure-native:containerservice:ManagedCluster").inputs
    assert cluster["disableLocalAccounts"] is False  # ml.attachAks is on (tests/infra/test_ml_attachment.py)
    assert cluster["aadProfile"]["managed"] is True and cluster["aadProfile"]["enableAzureRBAC"] is True
    assert cluster["identity"] == {"type": "SystemAssigned"}
    assert cluster["oidcIssuerProfile"]["enabled"] is True
    assert cluster["securityProfile"]["workloadIdentity"]["enabled"] is True
    assert cluster["networkProfile"]["networkPlugin"] == "azure"
    assert cluster["networkProfile"]["networkPolicy"] == "cilium"
    assert cluster["addonProfiles"]["omsagent"]["config"]["logAnalyticsWorkspaceResourceID"].endswith(
        "/workspaces/log-mlk-" + env)
    (system,) = cluster["agentPoolProfiles"]
    assert system["mode"] == "System" and system["nodeTaints"] == ["CriticalAddonsOnly=true:NoSchedule"]
    assert system["enableNodePublicIP"] is False


@pytest.mark.parametrize("env", ENVS)
def test_user_pools_are_separate_autoscaled_agent_pools(recordings, env):
    pools = {p.inputs["agentPoolName"]: p for p in recordings[env].of_type("azure-native:containerservice:AgentPool")}
    assert set(pools) == {"x86", "arm64"}
    for pool in pools.values():
        assert pool.inputs["enableAutoScaling"] is True and pool.inputs["mode"] == "User"
        assert pool.inputs["minCount"] <= pool.inputs["maxCount"]
        assert "count" in pool.ignore_changes
    assert ARM64_VM_SIZE.match(pools["arm64"].inputs["vmSize"])
    assert not ARM64_VM_SIZE.match(pools["x86"].inputs["vmSize"])
    assert "kubernetes.io/arch=arm64:NoSchedule" in pools["arm64"].inputs["nodeTaints"]


@pytest.mark.parametrize("env", ENVS)
def test_role_assignments_go_to_the_right_identities(recordings, env):
    rec = recordings[env]
    cluster_name = rec.one("azure-native:containerservice:ManagedCluster").inputs["resourceName"]
    assignments = {a.name.split("-", 1)[1]: a.inputs for a in rec.of_type("azure-native:authorization:RoleAssignment")
                   if a.name.startswith("access-")}
    acr_pull = assignments["kubelet-acrpull"]
    assert acr_pull["roleDefinitionId"].endswith("/7f951dda-4ed3-4680-a7ca-43fe172d538d")
    assert acr_pull["principalId"] == stable_uuid(cluster_name, "kubelet")
    assert acr_pull["scope"].endswith("/registries/" + rec.one("azure-native:containerregistry:Registry").inputs["registryName"])
    for key, subnet in (("cluster-nodes-network", "snet-aks-nodes"),):
        network = assignments[key]
        assert network["roleDefinitionId"].endswith("/4d97b98b-1d4f-4787-a291-c67834d212e7")
        assert network["principalId"] == stable_uuid(cluster_name, "cluster-identity")
        assert network["scope"].endswith(f"/subnets/{subnet}")
    for inputs in assignments.values():
        assert inputs["principalType"] == "ServicePrincipal"
        assert re.fullmatch(r"[0-9a-f-]{36}", inputs["roleAssignmentName"])


@pytest.mark.parametrize("env", ENVS)
def test_aks_attached_to_the_workspace_declaratively(recordings, env):
    rec = recordings[env]
    extension = rec.one("azure-native:kubernetesconfiguration:Extension")
    compute = next(c for c in rec.of_type("azure-native:machinelearningservices:Compute")
                   if c.inputs["properties"]["computeType"] == "Kubernetes")
    assert extension.inputs["extensionType"] == "Microsoft.AzureML.Kubernetes"
    assert extension.inputs["clusterResourceName"] == "managedClusters"
    assert extension.inputs["configurationSettings"]["enableInference"] == "False"  # no TLS configured here
    assert compute.inputs["properties"]["computeType"] == "Kubernetes"
    assert compute.inputs["properties"]["resourceId"].endswith("/managedClusters/aks-mlk-" + env)
    assert extension.urn in compute.dependencies


@pytest.mark.parametrize("env", ENVS)
def test_tags_on_every_taggable_resource(recordings, env):
    checked = 0
    for resource in recordings[env].resources:
        if resource.custom and taggable(resource.type):
            tags = resource.inputs.get("tags", {})
            assert all(tags.get(t) for t in REQUIRED_TAGS), (resource.type, resource.name, tags)
            assert tags["env"] == env
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("env", ENVS)
def test_outputs_and_kubeconfig_is_secret(recordings, env):
    outputs = recordings[env].outputs
    assert outputs["kubeconfig"] == "[secret]"
    assert outputs["registryLoginServer"].endswith(".azurecr.io")
    assert outputs["clusterName"] == f"aks-mlk-{env}" and outputs["workspaceName"] == f"mlw-mlk-{env}"
    assert set(outputs["subnetIds"]) == {"aksNodes", "privateEndpoints"}


def test_globally_unique_names_differ_per_environment(recordings):
    for typ, key in (("azure-native:storage:StorageAccount", "accountName"),
                     ("azure-native:containerregistry:Registry", "registryName"),
                     ("azure-native:keyvault:Vault", "vaultName")):
        names = {recordings[env].one(typ).inputs[key] for env in ENVS}
        assert len(names) == len(ENVS), names


def test_a_rerun_declares_exactly_the_same_resources(recordings):
    from infra.offline.plan import record_env
    again = record_env("qa")

    def by_urn(rec):
        return sorted((r.as_json() for r in rec.resources), key=lambda r: r["urn"])
    assert by_urn(again) == by_urn(recordings["qa"])


@pytest.mark.parametrize("env", ["qa", "uat", "prod"])
def test_placeholder_agents_wait_for_the_devops_pools(recordings, env):
    rec = recordings[env]
    pools = {r.urn for r in rec.resources if r.type == "azuredevops:index/pool:Pool"}
    placeholders = [r for r in rec.resources if r.type == "pulumi-python:dynamic:Resource" and "placeholder" in r.name]
    assert pools and placeholders
    for placeholder in placeholders:
        assert pools <= set(placeholder.dependencies), placeholder.name


@pytest.mark.parametrize("env", ["qa", "uat", "prod"])
def test_federated_credentials_are_written_one_after_another(recordings, env):
    credentials = recordings[env].of_type("azure-native:managedidentity:FederatedIdentityCredential")
    assert len(credentials) >= 2
    urns = {c.urn for c in credentials}
    waits_for = [set(c.dependencies) & urns for c in credentials]
    # one chain: the first waits for none, every other for exactly one, and no two for the same one
    assert sorted(len(w) for w in waits_for) == [0] + [1] * (len(credentials) - 1)
    assert len(set().union(*waits_for)) == len(credentials) - 1


def test_inference_only_over_tls_and_attachment_optional(stack_root, tmp_path):
    from infra.offline.plan import record_env

    def with_tls(config):
        config["mlops-edge-kit:ml"] = {"inferenceTls": {"sslCname": "ml.dev.example.com", "sslSecret": "ml-tls"}}
    rec = record_env(stack_root(with_tls), root=tmp_path)
    settings = rec.one("azure-native:kubernetesconfiguration:Extension").inputs["configurationSettings"]
    assert settings["enableInference"] == "True" and settings["allowInsecureConnections"] == "False"
    assert (settings["sslCname"], settings["sslSecret"]) == ("ml.dev.example.com", "ml-tls")
    assert settings["inferenceRouterServiceType"] == "loadBalancer"
    assert settings["internalLoadBalancerProvider"] == "azure"
    assert any("local accounts disabled" in note for note in rec.notes)

    def detached(config):
        config["mlops-edge-kit:ml"] = {"attachAks": False}
    rec = record_env(stack_root(detached), root=tmp_path)
    assert not rec.of_type("azure-native:kubernetesconfiguration:Extension")
    assert not rec.of_type("azure-native:machinelearningservices:Compute")
    assert not any("AzureML" in note for note in rec.notes)


@pytest.mark.parametrize("env", ENVS)
def test_agents_run_the_agent_version_the_image_pins(env):
    from agents.build import read_lock
    from infra.stack.stack_config import project_values, read_stack_file, stack_file
    agents = project_values(read_stack_file(stack_file(env)))["agents"]
    assert agents["image"]["tag"] == read_lock()["AGENT_VERSION"]
