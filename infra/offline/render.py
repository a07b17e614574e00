"""The readable plan: components, then resources with type, name and the properties that matter."""
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from infra.offline.policies import dig
from infra.offline.runtime import Recording

KEY_PROPERTIES = {
    "azure-native:resources:ResourceGroup": ["location"],
    "azure-native:network:VirtualNetwork": ["addressSpace.addressPrefixes"],
    "azure-native:network:Subnet": ["addressPrefix"],
    "azure-native:containerregistry:Registry": ["sku.name", "adminUserEnabled", "publicNetworkAccess"],
    "azure-native:storage:StorageAccount": ["sku.name", "minimumTlsVersion", "allowBlobPublicAccess",
                                            "publicNetworkAccess"],
    "azure-native:keyvault:Vault": ["properties.enableRbacAuthorization", "properties.enablePurgeProtection",
                                    "properties.publicNetworkAccess"],
    "azure-native:machinelearningservices:Workspace": ["identity.type", "publicNetworkAccess"],
    "azure-native:containerservice:ManagedCluster": [
        "kubernetesVersion", "sku.tier", "apiServerAccessProfile.enablePrivateCluster",
        "apiServerAccessProfile.authorizedIPRanges", "networkProfile.networkDataplane",
        "networkProfile.serviceCidr", "networkProfile.podCidr", "disableLocalAccounts"],
    "azure-native:containerservice:AgentPool": ["vmSize", "minCount", "maxCount", "nodeTaints"],
    "azure-native:authorization:RoleAssignment": ["roleDefinitionId", "principalType"],
    "azure-native:operationalinsights:Workspace": ["retentionInDays"],
}


def describe(typ: str, inputs: dict[str, Any]) -> str:
    """'key=value' for the properties of this type that matter."""
    if typ.startswith("kubernetes:") and "kind" in inputs:
        meta = inputs.get("metadata", {})
        return f"{inputs['kind']} {meta.get('namespace', '')}/{meta.get('name', '')}".replace(" /", " ")
    shown = []
    for path in KEY_PROPERTIES.get(typ, []):
        value = dig(inputs, path)
        if value is not None:
            shown.append(f"{path}={value}")
    return " ".join(shown)


def plan_tree(recording: Recording) -> Tree:
    root = Tree(f"[bold]stack {recording.stack}[/] ({sum(r.custom for r in recording.resources)} resources)")
    branches = {"": root}
    for r in recording.resources:
        parent = branches.get(r.parent, root)
        label = f"[cyan]{r.type}[/] [bold]{r.name}[/]" if r.custom else f"[magenta]{r.type}[/] [bold]{r.name}[/]"
        details = escape(describe(r.type, r.inputs))
        protect = " [red](protected)[/]" if r.protect else ""
        branches[r.urn] = parent.add(f"{label}{protect} [dim]{details}[/]" if details else f"{label}{protect}")
    return root


def print_plan(recording: Recording, console: Console) -> None:
    console.print(plan_tree(recording))
    console.print("[bold]outputs[/]")
    for name, value in sorted(recording.outputs.items()):
        console.print(f"  {name} = {escape(str(value))}")
    for note in recording.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
