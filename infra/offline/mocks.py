"""Pulumi mocks that answer like Azure: realistic ids, names, login servers, a kubeconfig and an access token."""
import base64
import json

import pulumi

from infra.offline.devops_answers import devops_call, offline_resource
from infra.offline.ids import SUBSCRIPTION_ID, TENANT_ID, stable_uuid

# resource type -> (ARM type, the input holding the resource's name)
ARM_TYPES = {
    "azure-native:resources:ResourceGroup": ("", "resourceGroupName"),
    "azure-native:network:VirtualNetwork": ("Microsoft.Network/virtualNetworks", "virtualNetworkName"),
    "azure-native:network:Subnet": ("Microsoft.Network/virtualNetworks/subnets", "subnetName"),
    "azure-native:network:NetworkSecurityGroup": ("Microsoft.Network/networkSecurityGroups", "networkSecurityGroupName"),
    "azure-native:network:VirtualNetworkPeering": ("Microsoft.Network/virtualNetworks/virtualNetworkPeerings", "virtualNetworkPeeringName"),
    "azure-native:network:NatGateway": ("Microsoft.Network/natGateways", "natGatewayName"),
    "azure-native:network:PublicIPAddress": ("Microsoft.Network/publicIPAddresses", "publicIpAddressName"),
    "azure-native:network:PrivateEndpoint": ("Microsoft.Network/privateEndpoints", "privateEndpointName"),
    "azure-native:network:PrivateDnsZoneGroup": ("Microsoft.Network/privateEndpoints/privateDnsZoneGroups", "privateDnsZoneGroupName"),
    "azure-native:privatedns:PrivateZone": ("Microsoft.Network/privateDnsZones", "privateZoneName"),
    "azure-native:privatedns:VirtualNetworkLink": ("Microsoft.Network/privateDnsZones/virtualNetworkLinks", "virtualNetworkLinkName"),
    "azure-native:operationalinsights:Workspace": ("Microsoft.OperationalInsights/workspaces", "workspaceName"),
    "azure-native:applicationinsights:Component": ("Microsoft.Insights/components", "resourceName"),
    "azure-native:storage:StorageAccount": ("Microsoft.Storage/storageAccounts", "accountName"),
    "azure-native:keyvault:Vault": ("Microsoft.KeyVault/vaults", "vaultName"),
    "azure-native:containerregistry:Registry": ("Microsoft.ContainerRegistry/registries", "registryName"),
    "azure-native:machinelearningservices:Workspace": ("Microsoft.MachineLearningServices/workspaces", "workspaceName"),
    "azure-native:machinelearningservices:Compute": ("Microsoft.MachineLearningServices/workspaces/computes", "computeName"),
    "azure-native:containerservice:ManagedCluster": ("Microsoft.ContainerService/managedClusters", "resourceName"),
    "azure-native:containerservice:AgentPool": ("Microsoft.ContainerService/managedClusters/agentPools", "agentPoolName"),
    "azure-native:kubernetesconfiguration:Extension": ("Microsoft.KubernetesConfiguration/extensions", "extensionName"),
    "azure-native:authorization:RoleAssignment": ("Microsoft.Authorization/roleAssignments", "roleAssignmentName"),
    "azure-native:containerregistry:ScopeMap": ("Microsoft.ContainerRegistry/registries/scopeMaps", "scopeMapName"),
    "azure-native:containerregistry:Token": ("Microsoft.ContainerRegistry/registries/tokens", "tokenName"),
    "azure-native:monitor:DataCollectionRule": ("Microsoft.Insights/dataCollectionRules", "dataCollectionRuleName"),
}


def arm_id(typ: str, name: str, inputs: dict) -> str:
    """The ARM id Azure would give the resource."""
    arm_type, _ = ARM_TYPES.get(typ, ("Microsoft.Mock/resources", ""))
    group = inputs.get("resourceGroupName", "rg")
    base = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{group}"
    if not arm_type:
        return base
    if typ.endswith(":Compute"):
        return f"{base}/providers/Microsoft.MachineLearningServices/workspaces/{inputs.get('workspaceName')}/computes/{name}"
    if typ.endswith(":Subnet"):
        return f"{base}/providers/Microsoft.Network/virtualNetworks/{inputs.get('virtualNetworkName')}/subnets/{name}"
    if typ.endswith(":VirtualNetworkPeering"):
        return f"{base}/providers/Microsoft.Network/virtualNetworks/{inputs.get('virtualNetworkName')}/virtualNetworkPeerings/{name}"
    if typ.endswith(":AgentPool"):
        return f"{base}/providers/Microsoft.ContainerService/managedClusters/{inputs.get('resourceName')}/agentPools/{name}"
    if typ.endswith((":ScopeMap", ":Token")):
        return f"{base}/providers/Microsoft.ContainerRegistry/registries/{inputs.get('registryName')}/{arm_type.rsplit('/', 1)[1]}/{name}"
    if typ.endswith(":RoleAssignment"):
        return f"{inputs.get('scope', base)}/providers/Microsoft.Authorization/roleAssignments/{name}"
    return f"{base}/providers/{arm_type}/{name}"


def kubeconfig(cluster: str, server: str) -> str:
    """A kubeconfig shaped like the one AKS returns for an Entra ID cluster (exec plugin kubelogin)."""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    certificate-authority-data: {base64.b64encode(b"mock-ca").decode()}
    server: https://{server}:443
contexts:
- name: {cluster}
  context: {{cluster: {cluster}, user: clusterUser_{cluster}}}
current-context: {cluster}
users:
- name: clusterUser_{cluster}
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: kubelogin
      args: [get-token, --environment, AzurePublicCloud, --server-id, 6dae42f8-4368-4678-94ff-3960e28e3630,
             --client-id, 80faf920-1908-4b52-b5ef-a8e7bedfc67a, --tenant-id, {TENANT_ID}, --login, devicecode]
"""


def access_token(claims: dict) -> str:
    """An unsigned JWT carrying `claims`, shaped like an Entra ID access token."""
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    return f"{part({'typ': 'JWT', 'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


class AzureMocks(pulumi.runtime.Mocks):
    """Answers resource registrations and invokes the way Azure would; the provider's login is a person's
    (`token_claims`, as an az login's ARM token carries them)."""

    token_claims = {"oid": stable_uuid("object"), "tid": TENANT_ID, "idtyp": "user", "scp": "user_impersonation"}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        answer = offline_resource(args.typ, args.name, inputs)
        if answer is not None:
            return answer
        _, name_key = ARM_TYPES.get(args.typ, ("", ""))
        name = inputs.get(name_key) or args.name
        state = {**inputs, "name": name, **_extra_state(args.typ, name, inputs)}
        return arm_id(args.typ, name, inputs), state

    def call(self, args: pulumi.runtime.MockCallArgs):
        answer = devops_call(args.token, dict(args.args))
        if answer is not None:
            return answer
        if args.token == "azure-native:authorization:getClientConfig":
            return {"clientId": stable_uuid("client"), "objectId": stable_uuid("object"),
                    "subscriptionId": SUBSCRIPTION_ID, "tenantId": TENANT_ID}
        if args.token == "azure-native:authorization:getClientToken":
            return {"token": access_token(self.token_claims)}
        if args.token == "azure-native:containerservice:listManagedClusterUserCredentials":
            cluster = args.args["resourceName"]
            config = kubeconfig(cluster, f"{cluster}-dns.hcp.westeurope.azmk8s.io")
            return {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(config.encode()).decode()}]}
        return {}


def _extra_state(typ: str, name: str, inputs: dict) -> dict:
    """Outputs Azure computes that the program reads back."""
    if typ == "azure-native:containerregistry:Registry":
        return {"loginServer": f"{name.lower()}.azurecr.io"}
    if typ == "azure-native:keyvault:Vault":
        return {"properties": {**inputs.get("properties", {}), "vaultUri": f"https://{name}.vault.azure.net/"}}
    if typ == "azure-native:containerservice:ManagedCluster":
        return _cluster_state(name, inputs)
    if inputs.get("identity", {}).get("type") == "SystemAssigned":
        return {"identity": {"type": "SystemAssigned", "principalId": stable_uuid(typ, name, "identity"),
                             "tenantId": TENANT_ID}}
    if typ == "azure-native:operationalinsights:Workspace":
        return {"customerId": stable_uuid(typ, name)}
    if typ == "azure-native:applicationinsights:Component":
        return {"instrumentationKey": stable_uuid(typ, name), "connectionString": f"InstrumentationKey={stable_uuid(typ, name)}"}
    return {}


def _cluster_state(name: str, inputs: dict) -> dict:
    location = inputs.get("location", "westeurope")
    return {
        "identity": {"type": "SystemAssigned", "principalId": stable_uuid(name, "cluster-identity"), "tenantId": TENANT_ID},
        "identityProfile": {"kubeletidentity": {
            "objectId": stable_uuid(name, "kubelet"), "clientId": stable_uuid(name, "kubelet-client"),
            "resourceId": f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/MC_{name}/providers/"
                          f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}-agentpool"}},
        "fqdn": f"{inputs.get('dnsPrefix', name)}.hcp.{location}.azmk8s.io",
        "oidcIssuerProfile": {"enabled": True, "issuerURL": f"https://{location}.oic.prod-aks.azure.com/{TENANT_ID}/{stable_uuid(name)}/"},
        "nodeResourceGroup": f"MC_{inputs.get('resourceGroupName')}_{name}_{location}",
    }
