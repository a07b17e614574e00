"""The kit's checks on a recorded plan: secure defaults, protection, tags and Azure names."""
import importlib
import inspect
import re
from functools import cache
from typing import Any, Callable, Iterator

from infra.access.roles import ACR_PULL, ACR_PUSH, AKS_RBAC_CLUSTER_ADMIN
from infra.stack.naming import RULES
from infra.offline.recorder import PlannedResource
from infra.offline.runtime import Recording

REQUIRED_TAGS = ("env", "owner", "cost-center", "managed-by")
STATEFUL = ("azure-native:machinelearningservices:Workspace", "azure-native:storage:StorageAccount",
            "azure-native:keyvault:Vault", "azure-native:containerregistry:Registry")
NAME_INPUTS = {"azure-native:storage:StorageAccount": ("accountName", "storage_account"),
               "azure-native:containerregistry:Registry": ("registryName", "registry"),
               "azure-native:keyvault:Vault": ("vaultName", "key_vault"),
               "azure-native:containerservice:ManagedCluster": ("resourceName", "cluster")}


def dig(inputs: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of wire names, or None."""
    value: Any = inputs
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


# resource type -> [(wire path, predicate, what must hold)]
SECURE_DEFAULTS: dict[str, list[tuple[str, Callable[[Any], bool], str]]] = {
    "azure-native:containerregistry:Registry": [
        ("adminUserEnabled", lambda v: v is False, "registry admin user must be disabled"),
        ("anonymousPullEnabled", lambda v: not v, "anonymous pull must be off")],
    "azure-native:storage:StorageAccount": [
        ("allowBlobPublicAccess", lambda v: v is False, "public blob access must be off"),
        ("minimumTlsVersion", lambda v: v == "TLS1_2", "minimum TLS version must be TLS1_2"),
        ("allowSharedKeyAccess", lambda v: v is False, "shared key access must be off")],
    "azure-native:keyvault:Vault": [
        ("properties.enableRbacAuthorization", lambda v: v is True, "key vault must use RBAC authorization")],
    "azure-native:containerservice:ManagedCluster": [
        ("aadProfile.enableAzureRBAC", lambda v: v is True, "AKS must use Entra ID with Azure RBAC"),
        ("apiServerAccessProfile", lambda v: bool(v and (v.get("enablePrivateCluster") or v.get("authorizedIPRanges"))),
         "AKS API server must be private or limited to authorized IP ranges")],
}


def violations(recording: Recording, *, protected: bool) -> list[str]:
    """Every policy the plan breaks, as 'resource: problem'."""
    problems: list[str] = [*_local_accounts(recording), *_kubernetes_access(recording), *_inference_tls(recording),
                           *_registry_consumers(recording), *_api_server_path(recording),
                           *_compute_outbound(recording)]
    for resource in recording.resources:
        problems += [f"{resource.type} {resource.name}: {p}" for p in _resource_problems(resource, protected)]
    return problems


def _local_accounts(recording: Recording) -> list[str]:
    """AKS local accounts off, unless AzureML attaches the cluster (which documents that it needs them)."""
    attached = {dig(c.inputs, "properties.resourceId")
                for c in recording.of_type("azure-native:machinelearningservices:Compute")}
    return [f"{c.type} {c.name}: AKS local accounts must be disabled (disableLocalAccounts is "
            f"{c.inputs.get('disableLocalAccounts')!r})"
            for c in recording.of_type("azure-native:containerservice:ManagedCluster")
            if c.inputs.get("disableLocalAccounts") is not True
            and not any((a or "").endswith(f"/managedClusters/{c.inputs.get('resourceName')}") for a in attached)]


def _inference_tls(recording: Recording) -> list[str]:
    """The AzureML extension's sslSecret is a Secret in its release namespace that exists before it is installed."""
    problems = []
    for ext in recording.of_type("azure-native:kubernetesconfiguration:Extension"):
        name = dig(ext.inputs, "configurationSettings.sslSecret")
        namespace = dig(ext.inputs, "scope.cluster.releaseNamespace")
        secrets = {s.urn for s in recording.of_type("kubernetes:core/v1:Secret")
                   if dig(s.inputs, "metadata.name") == name and dig(s.inputs, "metadata.namespace") == namespace}
        if name and not secrets & set(ext.dependencies):
            problems.append(f"{ext.type} {ext.name}: sslSecret {name!r} is not a Secret created in namespace "
                            f"{namespace!r} before the extension: create it (cert.pem, key.pem) first")
    return problems


def _registry_consumers(recording: Recording) -> list[str]:
    """Everyone who pulls or pushes has a network path to the registry and a credential for it: the AKS kubelet,
    AzureML, each edge site (and its pushing agents), the AKS agents that push. Azure only tells at pull time."""
    registries = recording.of_type("azure-native:containerregistry:Registry")
    if len(registries) != 1:
        return []
    registry = registries[0]
    name = registry.inputs.get("registryName")
    on_registry = f"/registries/{name}"
    private = any(dig(e.inputs, "privateLinkServiceConnections") and
                  e.inputs["privateLinkServiceConnections"][0].get("groupIds") == ["registry"]
                  for e in recording.of_type("azure-native:network:PrivateEndpoint"))
    public = registry.inputs.get("publicNetworkAccess") == "Enabled"
    open_to_all = public and dig(registry.inputs, "networkRuleSet.defaultAction") != "Deny"
    allow_listed = public and bool(dig(registry.inputs, "networkRuleSet.ipRules"))
    deps = ancestors(recording)
    clusters = {c.urn for c in recording.of_type("azure-native:containerservice:ManagedCluster")}

    def granted(role: str, from_resources: set[str] | None = None) -> bool:
        """`role` on the registry, to a principal one of `from_resources` has (any principal when None)."""
        return any((a.inputs.get("roleDefinitionId") or "").endswith(f"/{role}")
                   and (a.inputs.get("scope") or "").endswith(on_registry)
                   and (from_resources is None or deps[a.urn] & from_resources)
                   for a in recording.of_type("azure-native:authorization:RoleAssignment"))

    tokens = {t.inputs.get("tokenName"): t for t in recording.of_type("azure-native:containerregistry:Token")}
    scopes = {s.inputs.get("scopeMapName"): s for s in recording.of_type("azure-native:containerregistry:ScopeMap")}
    providers = [p.name for p in recording.of_type("pulumi:providers:kubernetes")]
    consumers: list[tuple[str, bool, bool]] = [("the AKS kubelet", private or open_to_all, granted(ACR_PULL, clusters))]
    builders = {c.urn for c in recording.of_type("azure-native:machinelearningservices:Compute")
                if dig(c.inputs, "properties.computeType") == "AmlCompute"}
    for ws in recording.of_type("azure-native:machinelearningservices:Workspace"):
        if (ws.inputs.get("containerRegistry") or "").endswith(on_registry):
            builds_inside = bool(private and ws.inputs.get("imageBuildCompute"))
            pushes = granted(ACR_PUSH, from_resources=builders) if builds_inside else True
            consumers.append(("AzureML (image builds)", open_to_all or builds_inside,
                              dig(ws.inputs, "identity.type") is not None and pushes))
    pipelines = recording.of_type("azure-native:managedidentity:UserAssignedIdentity")  # the stack's pipeline identity
    if "aks-agents-k8s" in providers and pipelines:
        consumers.append(("the AKS agent pools (push)", private or open_to_all,
                          granted(ACR_PUSH, {p.urn for p in pipelines})))
    for site in sorted({p[len("edge-"):].rsplit("-", 2)[0] for p in providers if p.startswith("edge-")}):
        token = tokens.get(f"edge-{site}")
        scope = scopes.get((token.inputs.get("scopeMapId") or "").rsplit("/", 1)[-1]) if token else None
        has_password = bool(token) and any(token.urn in deps[w] for w in waits_on(recording))
        consumers.append((f"edge site {site}", open_to_all or allow_listed, bool(scope) and has_password))
        if f"edge-{site}-agents-k8s" in providers:
            pushes = any(a.endswith("/content/write") for a in (scope.inputs.get("actions") if scope else []))
            consumers.append((f"edge site {site}'s agent pools (push)", open_to_all or allow_listed, pushes))
    problems = []
    for consumer, path, credential in consumers:
        if not path:
            problems.append(f"registry {name}: {consumer} has no network path to it")
        if not credential:
            problems.append(f"registry {name}: {consumer} has no credential for it")
    return problems


def waits_on(recording: Recording) -> list[str]:
    """The dynamic resources of the plan (readiness waits, generated passwords), by URN."""
    return [r.urn for r in recording.of_type("pulumi-python:dynamic:Resource")]


def ancestors(recording: Recording) -> dict[str, set[str]]:
    """Every resource's transitive dependencies (by URN)."""
    direct = {r.urn: set(r.dependencies) for r in recording.resources}
    found: dict[str, set[str]] = {}

    def walk(urn: str) -> set[str]:
        if urn not in found:
            found[urn] = set()
            for dep in direct.get(urn, ()):
                found[urn] |= {dep, *walk(dep)}
        return found[urn]
    for urn in direct:
        walk(urn)
    return found


def _kubernetes_access(recording: Recording) -> list[str]:
    """Azure RBAC clusters: the deployer holds AKS RBAC Cluster Admin there, and every Kubernetes provider for
    the cluster waits for that grant to take effect (a resource after the grant), or its first call gets 403."""
    deps, problems = ancestors(recording), []
    waits = set(waits_on(recording))
    for cluster in recording.of_type("azure-native:containerservice:ManagedCluster"):
        if dig(cluster.inputs, "aadProfile.enableAzureRBAC") is not True:
            continue
        scope = f"/managedClusters/{cluster.inputs.get('resourceName')}"
        grants = {a.urn for a in recording.of_type("azure-native:authorization:RoleAssignment")
                  if (a.inputs.get("roleDefinitionId") or "").endswith(f"/{AKS_RBAC_CLUSTER_ADMIN}")
                  and (a.inputs.get("scope") or "").endswith(scope)}
        if not grants:
            problems.append(f"{cluster.type} {cluster.name}: nobody may use the Kubernetes API (Azure RBAC): grant "
                            "'Azure Kubernetes Service RBAC Cluster Admin' on the cluster to the deploying principal")
        ready = {w for w in waits if deps[w] & grants}
        for provider in recording.of_type("pulumi:providers:kubernetes"):
            if cluster.urn in deps[provider.urn] and not deps[provider.urn] & ready:
                problems.append(f"{provider.type} {provider.name}: does not wait until the Kubernetes API allows the "
                                f"deploying principal on {cluster.name} (its first call would get 403)")
    return problems


def _api_server_path(recording: Recording) -> list[str]:
    """An ephemeral stack's private API server is reached from its base env's VNET, where the agent running `up`
    is: a peering each way between the two VNETs, and the public FQDN (resolving to the private endpoint)."""
    vnets = {v.inputs.get("virtualNetworkName") for v in recording.of_type("azure-native:network:VirtualNetwork")}
    links = {(p.inputs.get("virtualNetworkName"), (dig(p.inputs, "remoteVirtualNetwork.id") or "").rsplit("/", 1)[-1])
             for p in recording.of_type("azure-native:network:VirtualNetworkPeering")
             if p.inputs.get("allowVirtualNetworkAccess") is True}
    peered = {remote for local, remote in links if local in vnets and (remote, local) in links}
    problems = []
    for cluster in recording.of_type("azure-native:containerservice:ManagedCluster"):
        access = cluster.inputs.get("apiServerAccessProfile") or {}
        if (cluster.inputs.get("tags") or {}).get("ephemeral") != "true" or not access.get("enablePrivateCluster"):
            continue
        if not peered:
            problems.append(f"{cluster.type} {cluster.name}: the private API server of an ephemeral stack is out of "
                            "reach of the agent running `up`: peer the VNET with its base env's both ways "
                            "(network.peerings)")
        if access.get("enablePrivateClusterPublicFQDN") is not True:
            problems.append(f"{cluster.type} {cluster.name}: a peered VNET resolves a private API server only through "
                            "its public FQDN: enablePrivateClusterPublicFQDN must be true")
    return problems


def _compute_outbound(recording: Recording) -> list[str]:
    """An AzureML compute cluster reaches Entra ID, ARM and the AzureML services outbound: its subnet has default
    outbound access, or a NAT gateway of this plan with a Standard public IP (how-to-secure-training-vnet)."""
    subnets = {s.inputs.get("subnetName"): s for s in recording.of_type("azure-native:network:Subnet")}
    addresses = {f"/publicIPAddresses/{a.inputs.get('publicIpAddressName')}"
                 for a in recording.of_type("azure-native:network:PublicIPAddress")
                 if dig(a.inputs, "sku.name") == "Standard"}
    gateways = {f"/natGateways/{g.inputs.get('natGatewayName')}"
                for g in recording.of_type("azure-native:network:NatGateway")
                if any((ip.get("id") or "").endswith(tuple(addresses)) for ip in g.inputs.get("publicIpAddresses") or [])}
    problems = []
    for compute in recording.of_type("azure-native:machinelearningservices:Compute"):
        subnet_id = dig(compute.inputs, "properties.properties.subnet.id")
        subnet = subnets.get((subnet_id or "").rsplit("/", 1)[-1]) if subnet_id else None
        if not subnet or subnet.inputs.get("defaultOutboundAccess") is not False:
            continue
        gateway = dig(subnet.inputs, "natGateway.id") or ""
        if not gateway.endswith(tuple(gateways)) or not gateways:
            problems.append(f"{compute.type} {compute.name}: its subnet {subnet.inputs.get('subnetName')} has no "
                            "default outbound access and no NAT gateway with a Standard public IP: the cluster "
                            "cannot reach Entra ID, ARM or the AzureML services (associate a NAT gateway)")
    return problems


def _resource_problems(resource: PlannedResource, protected: bool) -> Iterator[str]:
    for path, holds, rule in SECURE_DEFAULTS.get(resource.type, []):
        if not holds(dig(resource.inputs, path)):
            yield f"{rule} ({path} is {dig(resource.inputs, path)!r})"
    if resource.type == "azure-native:keyvault:Vault" and protected:
        if dig(resource.inputs, "properties.enablePurgeProtection") is not True:
            yield "purge protection must be on in a protected environment"
    if resource.type in STATEFUL and resource.protect != protected:
        yield f"protect must be {protected} for stateful resources in this environment"
    if taggable(resource.type):
        missing = [t for t in REQUIRED_TAGS if t not in (resource.inputs.get("tags") or {})]
        if missing:
            yield f"missing tags: {', '.join(missing)}"
    yield from _name_problems(resource)


def _name_problems(resource: PlannedResource) -> Iterator[str]:
    key, rule_name = NAME_INPUTS.get(resource.type, (None, None))
    if key:
        pattern, rule = RULES[rule_name]
        name = resource.inputs.get(key, "")
        if not re.match(pattern, name):
            yield f"name {name!r} breaks Azure's rule: {rule}"


@cache
def taggable(type_token: str) -> bool:
    """Whether the azure-native resource type takes tags (read from the SDK's own signature)."""
    provider, module, cls_name = type_token.split(":")
    if provider != "azure-native":
        return False
    cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), cls_name)
    return "tags" in inspect.signature(cls._internal_init).parameters
