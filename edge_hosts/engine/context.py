"""What a step sees of one host during a run: its session, its facts and what changed so far."""
from __future__ import annotations

from dataclasses import dataclass, field

from edge_hosts.artifacts.downloads import ArtifactSource
from edge_hosts.inventory.model import Host, Inventory
from edge_hosts.facts.probe import Facts, gather
from edge_hosts.access.ssh import HostSession
from edge_hosts.facts.cluster import Reading


@dataclass
class HostContext:
    inventory: Inventory
    host: Host
    session: HostSession
    source: ArtifactSource
    facts: Facts | None = None
    changed: list[str] = field(default_factory=list)
    replaced: set[str] = field(default_factory=set)  # artifacts/config written this run: bin, install, config
    started: bool = False  # the unit was (re)started this run: readiness must be waited for
    error: str | None = None
    stopped: bool = False  # the run was stopped (Ctrl-C) before this host finished: `error` says where
    in_step: bool = False  # one of its steps is running
    reads_cluster: bool = False  # the first server's probe also reads the running cluster (tokens, snapshot)
    reading: Reading | None = None
    step: str = "waiting"

    @property
    def failed(self) -> bool:
        return self.error is not None

    def refresh(self) -> Facts:
        self.facts, self.reading = gather(self.session, self.reads_cluster)
        return self.facts


class StepError(Exception):
    """A step's check failed; the message says why."""
