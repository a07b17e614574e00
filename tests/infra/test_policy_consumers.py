"""The plan policy on the registry's consumers (policies._registry_consumers), on a small hand-made plan: each
consumer (the AKS kubelet, AzureML's image builds, the AKS agent pools, each edge site and its agent pools) is named
when it has no network path or no credential, with exactly the problems that break, and not when it has both."""
import pytest

from infra.access.roles import ACR_PULL, ACR_PUSH
from infra.offline import policies
from tests.infra.planned import RG, plan, resource, role, without

REGISTRY = "azure-native:containerregistry:Registry"
ENDPOINT = "azure-native:network:PrivateEndpoint"
PROVIDER = "pulumi:providers:kubernetes"
DYNAMIC = "pulumi-python:dynamic:Resource"
REG_ID = f"{RG}/providers/Microsoft.ContainerRegistry/registries/crx"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
SITE = "plant-berlin"  # a site name with a dash: providers are edge-<site>-apps-k8s and edge-<site>-agents-k8s


def consumers_plan():
    """A registry with a private endpoint and an allow list; every consumer has its path and credential."""
    registry = resource(REGISTRY, "crx", registryName="crx", publicNetworkAccess="Enabled",
                        networkRuleSet={"defaultAction": "Deny",
                                        "ipRules": [{"action": "Allow", "iPAddressOrRange": "198.51.100.20/32"}]})
    cluster = resource("azure-native:containerservice:ManagedCluster", "aks", resourceName="aks")
    build = resource("azure-native:machinelearningservices:Compute", "image-build",
                     properties={"computeType": "AmlCompute"})
    attached = resource("azure-native:machinelearningservices:Compute", "ml-aks", cluster,
                        properties={"computeType": "Kubernetes"})
    pipelines = resource("azure-native:managedidentity:UserAssignedIdentity", "pipelines")
    scope = resource("azure-native:containerregistry:ScopeMap", "edge-scope", registry, scopeMapName=f"edge-{SITE}",
                     actions=["repositories/ai-app/content/read", "repositories/ai-app/content/write"])
    token = resource("azure-native:containerregistry:Token", "edge-token", scope, tokenName=f"edge-{SITE}",
                     scopeMapId=f"{REG_ID}/scopeMaps/edge-{SITE}")
    return plan(
        registry, cluster, build, attached, pipelines, scope, token,
        resource(ENDPOINT, "cr-pe", registry, privateLinkServiceConnections=[{"groupIds": ["registry"]}]),
        resource(ENDPOINT, "kv-pe", privateLinkServiceConnections=[{"groupIds": ["vault"]}]),
        resource(ENDPOINT, "manual-pe", manualPrivateLinkServiceConnections=[{"groupIds": ["registry"]}]),
        role("kubelet-acrpull", ACR_PULL, REG_ID, cluster, registry),
        role("image-build-acrpush", ACR_PUSH, REG_ID, build),
        role("pipelines-acr-push", ACR_PUSH, REG_ID, pipelines),
        resource("azure-native:machinelearningservices:Workspace", "mlw", registry, containerRegistry=REG_ID,
                 identity={"type": "SystemAssigned"}, imageBuildCompute="image-build"),
        resource(PROVIDER, "aks-agents-k8s", cluster),
        resource(PROVIDER, f"edge-{SITE}-apps-k8s"), resource(PROVIDER, f"edge-{SITE}-agents-k8s"),
        resource(DYNAMIC, "cluster-admins-ready", cluster),  # a wait that has nothing to do with the token
        resource(DYNAMIC, "edge-password", token, "urn:pulumi:t::kit::pulumi:providers:azure-native::default"))


def named(recording, name):
    return next(r for r in recording.resources if r.name == name)


def problems_of(change) -> list[str]:
    recording = consumers_plan()
    change(recording)
    return policies._registry_consumers(recording)


def no_path(consumer: str) -> str:
    return f"registry crx: {consumer} has no network path to it"


def no_credential(consumer: str) -> str:
    return f"registry crx: {consumer} has no credential for it"


def test_a_plan_where_every_consumer_has_a_path_and_a_credential_passes():
    assert policies._registry_consumers(consumers_plan()) == []


def test_a_plan_of_no_registry_or_of_two_registries_is_not_judged():
    """The rule judges a stack's one registry; a plan of none or two (not the kit's) is left alone."""
    recording = consumers_plan()
    assert policies._registry_consumers(without(recording, "crx")) == []
    assert policies._registry_consumers(recording) == []
    recording.resources.append(resource(REGISTRY, "crsecond", registryName="crsecond"))
    recording.resources.remove(named(recording, "kubelet-acrpull"))
    assert policies._registry_consumers(recording) == []


def drop(*names):
    def change(recording):
        recording.resources[:] = without(recording, *names).resources
    return change


def update(name, **inputs):
    def change(recording):
        named(recording, name).inputs.update(inputs)
    return change


def pop(name, key):
    def change(recording):
        named(recording, name).inputs.pop(key)
    return change


def depend(name, *on):
    def change(recording):
        named(recording, name).dependencies = [named(recording, n).urn for n in on]
    return change


def both(*changes):
    def change(recording):
        for one in changes:
            one(recording)
    return change


EDGE_PATHS = [no_path(f"edge site {SITE}"), no_path(f"edge site {SITE}'s agent pools (push)")]
INSIDE_PATHS = [no_path("the AKS kubelet"), no_path("AzureML (image builds)"), no_path("the AKS agent pools (push)")]
EDGE_CREDENTIALS = [no_credential(f"edge site {SITE}"), no_credential(f"edge site {SITE}'s agent pools (push)")]

NETWORK = {
    "no private endpoint for the registry": (drop("cr-pe"), INSIDE_PATHS),
    "public access disabled": (update("crx", publicNetworkAccess="Disabled"), EDGE_PATHS),
    "public access disabled, no network rules": (both(update("crx", publicNetworkAccess="Disabled"),
                                                      pop("crx", "networkRuleSet")), EDGE_PATHS),
    "public access without an allow list": (update("crx", networkRuleSet={"defaultAction": "Deny"}), EDGE_PATHS),
    "public access open to all, no private endpoint": (both(drop("cr-pe"), pop("crx", "networkRuleSet")), []),
    "open to all by an explicit Allow": (both(drop("cr-pe"), update("crx", networkRuleSet={"defaultAction": "Allow"})),
                                         []),
}


@pytest.mark.parametrize("case", NETWORK)
def test_each_consumer_without_a_network_path_is_named(case):
    change, expected = NETWORK[case]
    assert problems_of(change) == expected


CREDENTIALS = {
    "kubelet grant missing": (drop("kubelet-acrpull"), [no_credential("the AKS kubelet")]),
    "kubelet grant to another principal": (depend("kubelet-acrpull", "crx"), [no_credential("the AKS kubelet")]),
    "kubelet grant on another registry": (update("kubelet-acrpull", scope=f"{REG_ID}other"),
                                          [no_credential("the AKS kubelet")]),
    "kubelet granted another role": (update("kubelet-acrpull", roleDefinitionId=f"/roleDefinitions/{READER}"),
                                     [no_credential("the AKS kubelet")]),
    "kubelet grant without a role or scope": (both(pop("kubelet-acrpull", "roleDefinitionId"),
                                                   pop("kubelet-acrpull", "scope")),
                                              [no_credential("the AKS kubelet")]),
    "workspace without an identity": (pop("mlw", "identity"), [no_credential("AzureML (image builds)")]),
    "build compute without AcrPush": (drop("image-build-acrpush"), [no_credential("AzureML (image builds)")]),
    "AcrPush to a compute that is not AmlCompute": (depend("image-build-acrpush", "ml-aks"),
                                                    [no_credential("AzureML (image builds)")]),
    "pipelines without AcrPush": (drop("pipelines-acr-push"), [no_credential("the AKS agent pools (push)")]),
    "site without a token": (drop("edge-token"), EDGE_CREDENTIALS),
    "token without a scope map": (pop("edge-token", "scopeMapId"), EDGE_CREDENTIALS),
    "token of a scope map not in the plan": (update("edge-token", scopeMapId=f"{REG_ID}/scopeMaps/other"),
                                             EDGE_CREDENTIALS),
    "token of another site only": (update("edge-token", tokenName="edge-plant"), EDGE_CREDENTIALS),
    "token without a generated password": (drop("edge-password"), [no_credential(f"edge site {SITE}")]),
    "scope map that cannot push": (update("edge-scope", actions=["repositories/ai-app/content/read"]),
                                   [no_credential(f"edge site {SITE}'s agent pools (push)")]),
}


@pytest.mark.parametrize("case", CREDENTIALS)
def test_each_consumer_without_a_credential_is_named(case):
    change, expected = CREDENTIALS[case]
    assert problems_of(change) == expected


NOT_CONSUMERS = {
    "a kubelet grant through an identity the cluster made": both(
        lambda rec: rec.resources.append(resource("azure-native:managedidentity:UserAssignedIdentity", "kubelet-id",
                                                  named(rec, "aks"))),
        depend("kubelet-acrpull", "kubelet-id")),
    "a workspace of another registry needs nothing of this one": both(
        update("mlw", containerRegistry=f"{REG_ID}other"), pop("mlw", "identity")),
    "a workspace of no registry needs nothing of this one": both(pop("mlw", "containerRegistry"),
                                                                 pop("mlw", "identity")),
    "no AKS agents, no AKS push": drop("aks-agents-k8s", "pipelines-acr-push"),
    "no pipeline identity, no AKS push": drop("pipelines", "pipelines-acr-push"),
    "a site without agents needs no push": both(drop(f"edge-{SITE}-agents-k8s"),
                                                update("edge-scope", actions=["repositories/ai-app/content/read"])),
    "not an edge provider": lambda rec: rec.resources.append(resource(PROVIDER, "fleet-edge-k8s")),
}


@pytest.mark.parametrize("case", NOT_CONSUMERS)
def test_what_needs_no_path_or_credential_is_not_named(case):
    assert problems_of(NOT_CONSUMERS[case]) == []


def test_image_builds_outside_the_vnet_need_the_public_path_and_no_push_grant():
    """Without an image-build compute AzureML builds on its own (serverless) compute: it needs the registry's
    public path, and the AcrPush grant of a build compute is not asked for."""
    change = both(pop("mlw", "imageBuildCompute"), drop("image-build-acrpush"))
    assert problems_of(change) == [no_path("AzureML (image builds)")]
    assert problems_of(both(change, pop("crx", "networkRuleSet"))) == []


def test_every_consumer_of_a_site_is_named_per_site():
    """Two sites, one of them without a token: only its own consumers are named, by its name."""
    def second_site(recording):
        recording.resources += [resource(PROVIDER, "edge-qa-apps-k8s"), resource(PROVIDER, "edge-qa-agents-k8s")]
    assert problems_of(second_site) == [no_credential("edge site qa"), no_credential("edge site qa's agent pools (push)")]
