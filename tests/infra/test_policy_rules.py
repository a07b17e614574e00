"""Each plan policy on small hand-made plans: it fires on the bad case with a message naming the resource and what
is wrong, not on the good one, at every branch (local accounts, inference TLS, Kubernetes API access, the ephemeral
API server's path, compute outbound, secure defaults, protection, tags, names), and violations() reports them all."""
import pytest

from infra.access.roles import AKS_RBAC_CLUSTER_ADMIN
from infra.offline import policies
from infra.stack.naming import RULES
from tests.infra.planned import RG, TAGS, plan, resource, role, without

CLUSTER = "azure-native:containerservice:ManagedCluster"
COMPUTE = "azure-native:machinelearningservices:Compute"
EXTENSION = "azure-native:kubernetesconfiguration:Extension"
SECRET = "kubernetes:core/v1:Secret"
PROVIDER = "pulumi:providers:kubernetes"
PEERING = "azure-native:network:VirtualNetworkPeering"
SUBNET = "azure-native:network:Subnet"
AKS_ID = f"{RG}/providers/Microsoft.ContainerService/managedClusters/aks"
NET = f"{RG}/providers/Microsoft.Network"


def named(recording, name):
    return next(r for r in recording.resources if r.name == name)


def test_dig_follows_dotted_wire_names_and_gives_none_off_the_path():
    inputs = {"a": {"b": {"c": 3}}, "flat": "x"}
    assert policies.dig(inputs, "a.b.c") == 3 and policies.dig(inputs, "a.b") == {"c": 3}
    assert policies.dig(inputs, "a.missing.c") is None and policies.dig(inputs, "flat.deeper") is None


def test_ancestors_are_transitive_and_dependencies_outside_the_plan_count():
    a = resource("t:a:A", "a")
    b = resource("t:b:B", "b", a, "urn:outside")
    c = resource("t:c:C", "c", b)
    assert policies.ancestors(plan(c, b, a)) == {a.urn: set(), b.urn: {a.urn, "urn:outside"}, "urn:outside": set(),
                                                 c.urn: {a.urn, b.urn, "urn:outside"}}
    assert policies.waits_on(plan(a, resource("pulumi-python:dynamic:Resource", "w"))) == [
        "urn:pulumi:t::kit::pulumi-python:dynamic:Resource::w"]


# local accounts
def local_accounts(value, *attached: str):
    computes = [resource(COMPUTE, f"ml-{i}", properties={"resourceId": rid}) for i, rid in enumerate(attached)]
    return policies._local_accounts(plan(resource(CLUSTER, "aks", resourceName="aks", disableLocalAccounts=value),
                                         *computes))


def test_local_accounts_off_pass():
    assert local_accounts(True) == []


@pytest.mark.parametrize("value", [False, None])
def test_local_accounts_on_are_named_with_the_setting_they_have(value):
    assert local_accounts(value) == [f"{CLUSTER} aks: AKS local accounts must be disabled (disableLocalAccounts is "
                                     f"{value!r})"]


def test_local_accounts_are_allowed_only_where_azureml_attaches_that_cluster():
    assert local_accounts(False, AKS_ID) == []
    assert len(local_accounts(False, f"{AKS_ID}-other", None)) == 1


# inference TLS
def tls_plan(secret_name="ml-tls", secret_namespace="azureml", depends=True, ssl_secret="ml-tls"):
    secret = resource(SECRET, "ml-tls-secret", metadata={"name": secret_name, "namespace": secret_namespace})
    settings = {"sslSecret": ssl_secret} if ssl_secret else {}
    ext = resource(EXTENSION, "ml-ext", *([secret] if depends else []), resource(CLUSTER, "aks"),
                   configurationSettings=settings, scope={"cluster": {"releaseNamespace": "azureml"}})
    return plan(secret, ext)


TLS_PROBLEM = (f"{EXTENSION} ml-ext: sslSecret 'ml-tls' is not a Secret created in namespace 'azureml' before the "
               "extension: create it (cert.pem, key.pem) first")


def test_an_ssl_secret_created_first_in_the_release_namespace_passes():
    assert policies._inference_tls(tls_plan()) == []
    assert policies._inference_tls(tls_plan(ssl_secret=None, depends=False)) == []  # no TLS asked, none needed


@pytest.mark.parametrize("case", [dict(depends=False), dict(secret_namespace="default"), dict(secret_name="other")])
def test_an_ssl_secret_not_created_first_or_elsewhere_is_named(case):
    assert policies._inference_tls(tls_plan(**case)) == [TLS_PROBLEM]


# Kubernetes API access on Azure RBAC clusters
def access_plan():
    cluster = resource(CLUSTER, "aks", resourceName="aks", aadProfile={"enableAzureRBAC": True})
    grant = role("deployer", AKS_RBAC_CLUSTER_ADMIN, AKS_ID, cluster)
    ready = resource("pulumi-python:dynamic:Resource", "ready", cluster, grant)
    apps = resource("azure-native:core:Anything", "after-ready", ready)
    return plan(cluster, grant, ready, apps, resource(PROVIDER, "aks-k8s", cluster, ready),
                resource(PROVIDER, "aks-late-k8s", cluster, apps), resource(PROVIDER, "edge-qa-k8s"),
                resource("pulumi-python:dynamic:Resource", "other-wait", cluster))


GRANT = (f"{CLUSTER} aks: nobody may use the Kubernetes API (Azure RBAC): grant 'Azure Kubernetes Service RBAC "
         "Cluster Admin' on the cluster to the deploying principal")


def no_wait(provider: str) -> str:
    return (f"{PROVIDER} {provider}: does not wait until the Kubernetes API allows the deploying principal on aks "
            "(its first call would get 403)")


def test_providers_that_wait_for_the_cluster_admin_grant_pass():
    assert policies._kubernetes_access(access_plan()) == []


@pytest.mark.parametrize("change", [
    lambda rec: rec.resources.remove(named(rec, "deployer")),
    lambda rec: named(rec, "deployer").inputs.update(scope=f"{AKS_ID}-other"),
    lambda rec: named(rec, "deployer").inputs.update(roleDefinitionId="/roleDefinitions/another-role"),
    lambda rec: [named(rec, "deployer").inputs.pop(k) for k in ("scope", "roleDefinitionId")],
], ids=["no grant", "grant on another cluster", "another role", "grant without role or scope"])
def test_a_cluster_without_the_admin_grant_is_named_and_so_is_each_provider(change):
    recording = access_plan()
    change(recording)
    assert policies._kubernetes_access(recording) == [GRANT, no_wait("aks-k8s"), no_wait("aks-late-k8s")]


def test_a_provider_that_does_not_wait_for_the_grant_is_named():
    recording = access_plan()
    named(recording, "aks-k8s").dependencies = [named(recording, "aks").urn, named(recording, "other-wait").urn]
    assert policies._kubernetes_access(recording) == [no_wait("aks-k8s")]


@pytest.mark.parametrize("aad", [{"enableAzureRBAC": False}, {}, None])
def test_clusters_without_azure_rbac_need_no_grant(aad):
    recording = without(access_plan(), "deployer")
    named(recording, "aks").inputs["aadProfile"] = aad
    assert policies._kubernetes_access(recording) == []


# the ephemeral stack's private API server
def path_plan(fqdn=True, ephemeral="true", private=True, back=True, access=(True, True), vnets=("eph", "base")):
    profile = {"enablePrivateCluster": private, **({"enablePrivateClusterPublicFQDN": fqdn} if fqdn is not None else {})}
    there, back_name = vnets
    peerings = [resource(PEERING, "to-base", virtualNetworkName=there, allowVirtualNetworkAccess=access[0],
                         remoteVirtualNetwork={"id": f"{NET}/virtualNetworks/{back_name}"})]
    if back:
        peerings.append(resource(PEERING, "to-eph", virtualNetworkName=back_name, allowVirtualNetworkAccess=access[1],
                                 remoteVirtualNetwork={"id": f"{NET}/virtualNetworks/{there}"}))
    return plan(resource("azure-native:network:VirtualNetwork", "vnet", virtualNetworkName="eph"),
                resource(CLUSTER, "aks", tags={**TAGS, "ephemeral": ephemeral}, apiServerAccessProfile=profile),
                *peerings)


NOT_PEERED = (f"{CLUSTER} aks: the private API server of an ephemeral stack is out of reach of the agent running "
              "`up`: peer the VNET with its base env's both ways (network.peerings)")
NO_FQDN = (f"{CLUSTER} aks: a peered VNET resolves a private API server only through its public FQDN: "
           "enablePrivateClusterPublicFQDN must be true")


def test_an_ephemeral_private_api_server_peered_both_ways_with_its_public_fqdn_passes():
    assert policies._api_server_path(path_plan()) == []


@pytest.mark.parametrize("case", [dict(back=False), dict(access=(True, False)), dict(access=(None, True)),
                                  dict(vnets=("other", "base"))],
                         ids=["one way only", "access off back", "access unset there", "peering of other vnets"])
def test_an_ephemeral_private_api_server_not_peered_both_ways_is_named(case):
    assert policies._api_server_path(path_plan(**case)) == [NOT_PEERED]


@pytest.mark.parametrize("fqdn", [False, None])
def test_an_ephemeral_private_api_server_without_its_public_fqdn_is_named(fqdn):
    assert policies._api_server_path(path_plan(fqdn=fqdn)) == [NO_FQDN]
    assert policies._api_server_path(path_plan(fqdn=fqdn, back=False)) == [NOT_PEERED, NO_FQDN]


@pytest.mark.parametrize("case", [dict(ephemeral="false"), dict(private=False)])
def test_stable_stacks_and_public_api_servers_need_no_peering(case):
    assert policies._api_server_path(path_plan(fqdn=None, back=False, **case)) == []
    untagged = path_plan(fqdn=None, back=False)
    named(untagged, "aks").inputs.pop("tags")
    named(untagged, "aks").inputs.pop("apiServerAccessProfile")
    assert policies._api_server_path(untagged) == []


# AzureML compute outbound
def outbound_plan(default_outbound=False, sku="Standard", gateway="ng", ips=("pip",)):
    subnet = {"subnetName": "snet", "defaultOutboundAccess": default_outbound}
    if gateway:
        subnet["natGateway"] = {"id": f"{NET}/natGateways/{gateway}"}
    return plan(resource(COMPUTE, "build", properties={"properties": {"subnet": {"id": f"{NET}/virtualNetworks/v/"
                                                                                      "subnets/snet"}}}),
                resource(SUBNET, "snet", **subnet),
                resource("azure-native:network:NatGateway", "ng", natGatewayName="ng",
                         publicIpAddresses=[{"id": f"{NET}/publicIPAddresses/{ip}"} for ip in ips] + [{}]),
                resource("azure-native:network:PublicIPAddress", "pip", publicIpAddressName="pip", sku={"name": sku}))


OUTBOUND = (f"{COMPUTE} build: its subnet snet has no default outbound access and no NAT gateway with a Standard "
            "public IP: the cluster cannot reach Entra ID, ARM or the AzureML services (associate a NAT gateway)")


def test_a_compute_behind_a_nat_gateway_with_a_standard_ip_passes():
    assert policies._compute_outbound(outbound_plan()) == []


@pytest.mark.parametrize("default_outbound", [True, None])
def test_a_subnet_with_default_outbound_access_needs_no_gateway(default_outbound):
    assert policies._compute_outbound(outbound_plan(default_outbound=default_outbound, gateway=None)) == []


@pytest.mark.parametrize("case", [dict(sku="Basic"), dict(gateway=None), dict(gateway="ng-other"), dict(ips=()),
                                  dict(ips=("pip-other",))],
                         ids=["basic IP", "no gateway", "a gateway not in the plan", "gateway without IP",
                              "gateway with another IP"])
def test_a_compute_without_an_outbound_path_is_named(case):
    assert policies._compute_outbound(outbound_plan(**case)) == [OUTBOUND]


def test_a_compute_outside_the_plans_subnets_is_not_judged():
    recording = outbound_plan(gateway=None)
    named(recording, "build").inputs["properties"] = {"computeType": "Kubernetes"}
    assert policies._compute_outbound(recording) == []
    named(recording, "build").inputs["properties"] = {"properties": {"subnet": {"id": f"{NET}/subnets/elsewhere"}}}
    assert policies._compute_outbound(recording) == []


# secure defaults, protection, tags and names (the per-resource problems)
REGISTRY = "azure-native:containerregistry:Registry"
VAULT = "azure-native:keyvault:Vault"
STORAGE = "azure-native:storage:StorageAccount"


def problems(typ, protected=False, protect=False, **inputs):
    return list(policies._resource_problems(resource(typ, "r", protect=protect, tags=TAGS, **inputs), protected))


GOOD_REGISTRY = dict(registryName="crgood", adminUserEnabled=False, anonymousPullEnabled=False)
GOOD_VAULT = dict(vaultName="kv-good", properties={"enableRbacAuthorization": True, "enablePurgeProtection": True})


def test_secure_default_messages_name_the_setting_and_its_value():
    assert problems(REGISTRY, **{**GOOD_REGISTRY, "adminUserEnabled": True}) == [
        "registry admin user must be disabled (adminUserEnabled is True)"]
    assert problems(VAULT, **{**GOOD_VAULT, "properties": {"enablePurgeProtection": True}}) == [
        "key vault must use RBAC authorization (properties.enableRbacAuthorization is None)"]


def test_purge_protection_is_asked_for_only_in_a_protected_environment():
    bare = {**GOOD_VAULT, "properties": {"enableRbacAuthorization": True}}
    assert problems(VAULT, protected=True, protect=True, **bare) == [
        "purge protection must be on in a protected environment"]
    assert problems(VAULT, protected=True, protect=True, **GOOD_VAULT) == []
    assert problems(VAULT, **bare) == []


@pytest.mark.parametrize("protected", [True, False])
def test_protect_must_match_the_environment_for_stateful_resources_only(protected):
    assert problems(REGISTRY, protected=protected, protect=not protected, **GOOD_REGISTRY) == [
        f"protect must be {protected} for stateful resources in this environment"]
    assert problems(REGISTRY, protected=protected, protect=protected, **GOOD_REGISTRY) == []
    assert problems("azure-native:network:VirtualNetwork", protected=protected, protect=not protected) == []


def test_missing_tags_are_listed_in_the_order_the_kit_requires_and_only_where_azure_takes_tags():
    tagged = resource("azure-native:network:VirtualNetwork", "vnet", tags={"env": "t", "managed-by": "pulumi"})
    assert list(policies._resource_problems(tagged, False)) == ["missing tags: owner, cost-center"]
    tagged.inputs.pop("tags")
    assert list(policies._resource_problems(tagged, False)) == ["missing tags: env, owner, cost-center, managed-by"]
    assert list(policies._resource_problems(resource(PROVIDER, "k8s"), False)) == []
    assert list(policies._resource_problems(resource(SECRET, "s"), False)) == []


@pytest.mark.parametrize("typ,key,rule", [(STORAGE, "accountName", "storage_account"), (REGISTRY, "registryName",
                         "registry"), (VAULT, "vaultName", "key_vault"), (CLUSTER, "resourceName", "cluster")])
def test_a_name_azure_refuses_is_named_with_its_rule(typ, key, rule):
    assert list(policies._name_problems(resource(typ, "r", **{key: "-x-"}))) == [
        f"name '-x-' breaks Azure's rule: {RULES[rule][1]}"]
    assert list(policies._name_problems(resource(typ, "r"))) == [f"name '' breaks Azure's rule: {RULES[rule][1]}"]
    assert list(policies._name_problems(resource(typ, "r", **{key: "good1name"}))) == []


def test_violations_reports_every_rule_with_the_resource_it_concerns():
    """One plan breaking each rule once: violations() has each rule's problem (the rules above, joined)."""
    broken = plan(*local_plan_parts(), *tls_plan(depends=False).resources, *outbound_plan(sku="Basic").resources)
    found = policies.violations(broken, protected=False)
    assert TLS_PROBLEM in found and OUTBOUND in found and GRANT in found
    assert f"{CLUSTER} aks: AKS local accounts must be disabled (disableLocalAccounts is None)" in found
    assert "registry crok1: the AKS kubelet has no credential for it" in found
    assert (f"{REGISTRY} crok1: registry admin user must be disabled (adminUserEnabled is None)") in found
    assert NO_FQDN in policies.violations(path_plan(fqdn=False), protected=False)


def local_plan_parts():
    return [resource(CLUSTER, "aks", resourceName="aks", aadProfile={"enableAzureRBAC": True}),
            resource(REGISTRY, "crok1", registryName="crok1", anonymousPullEnabled=False, tags=TAGS,
                     publicNetworkAccess="Enabled")]


# each rule judges every resource of its kind, whatever comes before it in the plan
def test_a_cluster_without_azure_rbac_listed_first_does_not_hide_the_next_one_s_missing_grant():
    recording = without(access_plan(), "deployer")
    recording.resources.insert(0, resource(CLUSTER, "aks-plain", resourceName="aks-plain"))
    assert policies._kubernetes_access(recording) == [GRANT, no_wait("aks-k8s"), no_wait("aks-late-k8s")]


def test_a_stable_cluster_listed_first_does_not_hide_the_ephemeral_one_s_missing_peering():
    recording = path_plan(back=False)
    recording.resources.insert(0, resource(CLUSTER, "aks-stable", tags=TAGS))
    assert policies._api_server_path(recording) == [NOT_PEERED]


def test_a_peering_whose_remote_vnet_is_not_known_yet_counts_as_no_peering():
    recording = path_plan()
    named(recording, "to-eph").inputs.pop("remoteVirtualNetwork")  # an output of another stack, unknown in a preview
    assert policies._api_server_path(recording) == [NOT_PEERED]


def test_a_compute_with_outbound_access_listed_first_does_not_hide_the_next_one_without():
    recording = outbound_plan(gateway=None)
    recording.resources.insert(0, resource(SUBNET, "snet-open", subnetName="snet-open"))
    recording.resources.insert(0, resource(COMPUTE, "open", properties={"properties": {"subnet": {
        "id": f"{NET}/virtualNetworks/v/subnets/snet-open"}}}))
    assert policies._compute_outbound(recording) == [OUTBOUND]
