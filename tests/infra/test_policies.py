"""Every plan policy fed the insecure resource it exists to catch, one break at a time, on real recordings."""
import copy

import pytest

from infra.offline import policies
from infra.offline.plan import record_env
from infra.offline.runtime import Recording

REGISTRY = "azure-native:containerregistry:Registry"
STORAGE = "azure-native:storage:StorageAccount"
VAULT = "azure-native:keyvault:Vault"
CLUSTER = "azure-native:containerservice:ManagedCluster"
WORKSPACE = "azure-native:machinelearningservices:Workspace"
COMPUTE = "azure-native:machinelearningservices:Compute"
VNET = "azure-native:network:VirtualNetwork"
STATEFUL = (WORKSPACE, STORAGE, VAULT, REGISTRY)


@pytest.fixture(scope="module")
def clean() -> dict[str, Recording]:
    """prod (protected, private API server) and dev (public API server behind authorized ranges); both pass."""
    return {env: record_env(env) for env in ("prod", "dev")}


def problems_after(clean, env: str, typ: str, change) -> tuple[list[str], str]:
    """The problems of env's plan once `change` is applied to its one `typ` resource, and that resource's prefix."""
    rec = copy.deepcopy(clean[env])
    assert policies.violations(rec, protected=env == "prod") == []
    resource = rec.one(typ)
    change(resource)
    return policies.violations(rec, protected=env == "prod"), f"{typ} {resource.name}: "


def expect(found: list[str], prefix: str, *words: str) -> None:
    """Some problem is about this resource and names every word (the setting or tag it concerns)."""
    assert any(p.startswith(prefix) and all(w in p for w in words) for p in found), (prefix, words, found)


def setting(path: str, value):
    """Set (or with value None, remove) the wire input at a dotted path."""
    def change(resource):
        *parents, leaf = path.split(".")
        node = resource.inputs
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return change


INSECURE = {
    "registry admin user on": (REGISTRY, "adminUserEnabled", True),
    "registry admin user unset": (REGISTRY, "adminUserEnabled", None),
    "anonymous pull": (REGISTRY, "anonymousPullEnabled", True),
    "public blob access": (STORAGE, "allowBlobPublicAccess", True),
    "public blob access unset": (STORAGE, "allowBlobPublicAccess", None),
    "TLS 1.0": (STORAGE, "minimumTlsVersion", "TLS1_0"),
    "TLS 1.1": (STORAGE, "minimumTlsVersion", "TLS1_1"),
    "TLS unset": (STORAGE, "minimumTlsVersion", None),
    "shared keys on": (STORAGE, "allowSharedKeyAccess", True),
    "shared keys unset": (STORAGE, "allowSharedKeyAccess", None),
    "vault access policies": (VAULT, "properties.enableRbacAuthorization", False),
    "vault RBAC unset": (VAULT, "properties.enableRbacAuthorization", None),
    "AKS without Azure RBAC": (CLUSTER, "aadProfile.enableAzureRBAC", False),
    "AKS Azure RBAC unset": (CLUSTER, "aadProfile.enableAzureRBAC", None),
    "AKS without Entra": (CLUSTER, "aadProfile", None),
}


@pytest.mark.parametrize("env", ["prod", "dev"])
@pytest.mark.parametrize("case", INSECURE)
def test_each_insecure_setting_is_caught(clean, env, case):
    typ, path, value = INSECURE[case]
    found, prefix = problems_after(clean, env, typ, setting(path, value))
    expect(found, prefix, path.rsplit(".", 1)[-1])


@pytest.mark.parametrize("env,profile", [
    ("prod", None), ("prod", {}), ("prod", {"enablePrivateCluster": False}),
    ("dev", None), ("dev", {"authorizedIPRanges": []}), ("dev", {"enablePrivateCluster": False, "authorizedIPRanges": []}),
])
def test_an_exposed_api_server_is_caught(clean, env, profile):
    found, prefix = problems_after(clean, env, CLUSTER, setting("apiServerAccessProfile", profile))
    expect(found, prefix, "apiServerAccessProfile")


def test_the_api_server_profiles_the_stacks_use_pass(clean):
    assert clean["prod"].one(CLUSTER).inputs["apiServerAccessProfile"]["enablePrivateCluster"] is True
    assert clean["dev"].one(CLUSTER).inputs["apiServerAccessProfile"]["authorizedIPRanges"]


@pytest.mark.parametrize("value", [False, None])
def test_local_accounts_on_a_cluster_azureml_does_not_attach_are_caught(clean, value):
    rec = copy.deepcopy(clean["prod"])
    rec.resources = [r for r in rec.resources if r.type != COMPUTE]
    cluster = rec.one(CLUSTER)
    setting("disableLocalAccounts", value)(cluster)
    expect(policies.violations(rec, protected=True), f"{CLUSTER} {cluster.name}: ", "local accounts")


@pytest.mark.parametrize("value", [False, None])
def test_purge_protection_off_in_a_protected_env_is_caught(clean, value):
    found, prefix = problems_after(clean, "prod", VAULT, setting("properties.enablePurgeProtection", value))
    expect(found, prefix, "purge protection")


def test_purge_protection_is_not_required_outside_protected_envs(clean):
    assert "enablePurgeProtection" not in clean["dev"].one(VAULT).inputs["properties"]


@pytest.mark.parametrize("typ", STATEFUL)
def test_a_stateful_resource_of_prod_without_protect_is_caught(clean, typ):
    def unprotect(resource):
        resource.protect = False
    found, prefix = problems_after(clean, "prod", typ, unprotect)
    expect(found, prefix, "protect", "True")


@pytest.mark.parametrize("typ", STATEFUL)
def test_a_stateful_resource_protected_outside_prod_is_caught(clean, typ):
    """protect outside a protected env would block the ephemeral/dev destroy the kit relies on."""
    def protect(resource):
        resource.protect = True
    found, prefix = problems_after(clean, "dev", typ, protect)
    expect(found, prefix, "protect", "False")


@pytest.mark.parametrize("typ", [VNET, CLUSTER, STORAGE])
@pytest.mark.parametrize("tag", ["env", "owner", "cost-center", "managed-by"])  # the tags README promises
def test_each_missing_tag_is_caught(clean, typ, tag):
    def untag(resource):
        resource.inputs["tags"].pop(tag)
    found, prefix = problems_after(clean, "prod", typ, untag)
    expect(found, prefix, tag)


def test_a_resource_without_any_tags_is_caught(clean):
    found, prefix = problems_after(clean, "dev", VNET, setting("tags", None))
    expect(found, prefix, "env", "owner", "cost-center", "managed-by")


@pytest.mark.parametrize("typ,key,bad", [
    (STORAGE, "accountName", "St-Bad"), (REGISTRY, "registryName", "cr-x"),
    (VAULT, "vaultName", "kv--double"), (CLUSTER, "resourceName", "-aks"),
])
def test_names_azure_refuses_are_caught(clean, typ, key, bad):
    found, prefix = problems_after(clean, "dev", typ, setting(key, bad))
    expect(found, prefix, repr(bad))
