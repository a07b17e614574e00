"""Live per-host view of a run's current step (rich, on stderr); quiet with --json. rich loads only when drawn."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from edge_hosts.engine.results import STYLE

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table


class Progress:
    """Live per-host view of the current step; quiet when disabled (e.g. --json)."""

    def __init__(self, hosts: list[str], enabled: bool = True, console: Console | None = None):
        self.rows = {name: ("waiting", "") for name in hosts}
        self.enabled = enabled
        self.console = console
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._table(), console=self.console or Console(stderr=True), refresh_per_second=4,
                              transient=True)
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
        from rich.table import Table

        table = Table(box=None)
        for column in ("host", "step", "state"):
            table.add_column(column)
        for name, (step, state) in self.rows.items():
            table.add_row(name, step, f"[{STYLE.get(state, 'cyan')}]{state}[/]")
        return table
