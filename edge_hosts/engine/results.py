"""A run's per-host result (ok, changed or failed, what changed, why it failed) and its JSON form."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "stopped": "magenta"}


@dataclass(frozen=True)
class HostResult:
    name: str
    status: str  # ok | changed | failed | stopped (the run was interrupted before the host finished)
    changed: list[str] = field(default_factory=list)
    error: str | None = None


def summary(site: str, results: list[HostResult]) -> dict:
    return {"site": site, "hosts": [asdict(r) for r in results]}


def summary_json(site: str, results: list[HostResult]) -> str:
    return json.dumps(summary(site, results))
