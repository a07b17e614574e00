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


class RecordingMonitor(MockMonitor):
    """A MockMonitor that also keeps what the engine would be asked to create, in order."""

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
            dependencies=sorted(request.dependencies), inputs=plain(request.object),
            custom=bool(request.custom), protect=bool(request.protect),
            ignore_changes=list(request.ignoreChanges),
        ))
        return response

    def RegisterResourceOutputs(self, request):
        if request.urn == self.stack_urn:
            self.stack_outputs = plain(request.outputs)
        return super().RegisterResourceOutputs(request)
