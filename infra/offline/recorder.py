"""Record every resource a Pulumi program registers, through Pulumi's own mock monitor."""
from dataclasses import dataclass, field
from typing import Any

from pulumi.runtime.mocks import MockMonitor

from infra.offline.wire import plain


@dataclass
class PlannedResource:
    """One registered resource as the engine would see it (inputs by wire name, secrets masked)."""

    urn: str
    type: str
    name: str
    parent: str
    provider: str
    dependencies: list[str]
    inputs: dict[str, Any]
    custom: bool
    protect: bool
    ignore_changes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn, "type": self.type, "name": self.name, "parent": self.parent,
            "provider": self.provider, "dependencies": self.dependencies, "custom": self.custom,
            "protect": self.protect, "ignoreChanges": self.ignore_changes, "inputs": self.inputs,
        }


def canonical(value: Any) -> Any:
    """The value with every mapping's keys sorted, at every depth (lists keep their order: it means something)."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def tree_order(resources: list[PlannedResource]) -> list[PlannedResource]:
    """Parents before their children, siblings by (type, name): the same list whatever order the engine's
    asynchronous registrations arrived in, so two plans of the same inputs are byte-identical."""
    known = {r.urn for r in resources}
    children: dict[str, list[PlannedResource]] = {}
    for r in resources:
        children.setdefault(r.parent if r.parent in known else "", []).append(r)
    ordered: list[PlannedResource] = []
    pending = sorted(children.get("", []), key=_sibling_key, reverse=True)
    while pending:
        resource = pending.pop()
        ordered.append(resource)
        pending += sorted(children.get(resource.urn, []), key=_sibling_key, reverse=True)
    return ordered


def _sibling_key(resource: PlannedResource) -> tuple[str, str, str]:
    return resource.type, resource.name, resource.urn


class RecordingMonitor(MockMonitor):
    """A MockMonitor that also keeps what the engine would be asked to create (in arrival order; see tree_order)."""

    def __init__(self, mocks):
        super().__init__(mocks)
        self.planned: list[PlannedResource] = []
        self.stack_outputs: dict[str, Any] = {}
        self.stack_urn = ""

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = response.urn
            return response
        self.planned.append(PlannedResource(
            urn=response.urn, type=request.type, name=request.name, parent=request.parent,
            provider=request.provider.rsplit("::", 1)[0],
            dependencies=sorted(set(request.dependencies)), inputs=canonical(plain(request.object)),
            custom=bool(request.custom), protect=bool(request.protect),
            ignore_changes=list(request.ignoreChanges),
        ))
        return response

    def RegisterResourceOutputs(self, request):
        if request.urn == self.stack_urn:
            self.stack_outputs = canonical(plain(request.outputs))
        return super().RegisterResourceOutputs(request)
