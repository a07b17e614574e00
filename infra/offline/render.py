"""The readable plan: components, then resources with type, name and the properties that matter.

Made for an 80-column terminal: ARM ids are shortened to their last segment (plan.json has them whole),
lines wrap at spaces and carry no trailing blanks.
"""
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.text import Text
from rich.tree import Tree

from common.terminal import emit
from infra.offline.diff import Change, shown
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
            shown.append(f"{path}={short(value)}")
    return " ".join(shown)


def short(value: Any) -> str:
    """A value for the terminal: ARM ids as '…/<last segment>', lists comma-separated."""
    if isinstance(value, list):
        return ",".join(short(v) for v in value)
    if isinstance(value, str) and value.startswith("/subscriptions/"):
        return "…/" + value.rstrip("/").rsplit("/", 1)[-1]
    return str(value)


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
    emit(console, plan_tree(recording))
    emit(console, "[bold]outputs[/]")
    for name, value in _flat(recording.outputs):
        emit(console, Padding(Text(f"{name} = {short(value)}"), (0, 0, 0, 2)))
    for note in recording.notes:
        emit(console, f"[yellow]note:[/] {escape(note)}")


def print_changes(changes: list[Change], old: str, console: Console) -> None:
    """The --diff report: one line per added/removed resource, each changed property as 'path: old -> new'."""
    counts = {a: sum(c.action == a and c.title != "stack outputs" for c in changes) for a in "~+-"}
    emit(console, Text(f"changes against {old}: {counts['~']} changed, {counts['+']} added, {counts['-']} removed"))
    style = {"~": "yellow", "+": "green", "-": "red"}
    for change in changes:
        emit(console, Text.assemble((f"{change.action} ", style[change.action]), (change.title, "bold")))
        for path, before, after in change.properties:
            emit(console, Padding(Text(f"{path}: {_change(before, after)}"), (0, 0, 0, 4)))


def _change(before: Any, after: Any) -> str:
    """'old -> new' as JSON; ARM ids by their last segment unless that is all they share."""
    old, new = shown(before), shown(after)
    if all(isinstance(v, str) and v.startswith("/subscriptions/") for v in (before, after)) \
            and short(before) != short(after):
        old, new = short(before), short(after)
    return f"{old} -> {new}"


def _flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Output values as (dotted name, leaf), mappings opened up so each fits a line."""
    flat = []
    for name, value in sorted(values.items()):
        if isinstance(value, dict) and value:
            flat += _flat(value, f"{prefix}{name}.")
        else:
            flat.append((f"{prefix}{name}", value))
    return flat
