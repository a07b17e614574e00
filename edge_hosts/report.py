"""Run results: live per-host progress and the final table (rich, on stderr), or one JSON object."""
from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table

STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red"}


@dataclass(frozen=True)
class HostResult:
    name: str
    status: str  # ok | changed | failed
    changed: list[str] = field(default_factory=list)
    error: str | None = None


def summary(site: str, results: list[HostResult]) -> dict:
    return {"site": site, "hosts": [asdict(r) for r in results]}


def summary_json(site: str, results: list[HostResult]) -> str:
    return json.dumps(summary(site, results))


def results_table(site: str, results: list[HostResult]) -> Table:
    table = Table(title=f"site {site}")
    for column in ("host", "status", "changed", "reason"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(r.name, f"[{STYLE[r.status]}]{r.status}[/]", ", ".join(r.changed), r.error or "")
    return table


class Progress:
    """Live per-host view of the current step; quiet when disabled (e.g. --json)."""

    def __init__(self, hosts: list[str], enabled: bool = True, console: Console | None = None):
        self.rows = {name: ("waiting", "") for name in hosts}
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, host: str, step: str, state: str = "running") -> None:
        with self._lock:
            self.rows[host] = (step, state)
            if self._live is not None:
                self._live.update(self._table())

    def _table(self) -> Table:
        table = Table(box=None)
        for column in ("host", "step", "state"):
            table.add_column(column)
        for name, (step, state) in self.rows.items():
            table.add_row(name, step, f"[{STYLE.get(state, 'cyan')}]{state}[/]")
        return table
