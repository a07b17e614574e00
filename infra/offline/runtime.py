"""Run a Pulumi program offline under Pulumi's mock runtime and return what it would deploy."""
import gc
from dataclasses import dataclass, field
from typing import Any, Callable

import pulumi
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from infra.offline.mocks import AzureMocks
from infra.offline.recorder import PlannedResource, RecordingMonitor, tree_order


@dataclass
class Recording:
    """Everything the program registered, parents first and siblings by type and name (the same order on every
    run), and its stack outputs with sorted keys (secrets masked)."""

    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def of_type(self, typ: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str) -> PlannedResource:
        found = self.of_type(typ)
        if len(found) != 1:
            raise LookupError(f"expected one {typ}, found {len(found)}")
        return found[0]


def record(program: Callable[[], Any], *, project: str, stack: str, config: dict[str, str],
           secret_keys: list[str], mocks: pulumi.runtime.Mocks | None = None) -> Recording:
    """Run `program` as the Pulumi engine would for `stack`, with config as `pulumi config` holds it."""
    monitor = RecordingMonitor(mocks or AzureMocks())
    pulumi.runtime.set_all_config(config, secret_keys)
    runtime_settings.set_root_resource(None)
    pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=False,
                             monitor=monitor, organization="organization")
    runtime_settings.set_root_resource(None)
    gc.disable()  # the SDK builds tens of thousands of classes on import; cyclic GC passes over them cost ~40%
    try:
        _sync_await(run_in_stack(program))
    finally:
        gc.enable()
    return Recording(stack=stack, resources=tree_order(monitor.planned), outputs=monitor.stack_outputs)
