"""How the lifecycle tasks show their results: rich tables for people, JSON for pipelines."""
import json

from rich.console import Console
from rich.table import Table

from infra.lifecycle.reaper import FAILED, REAPED, Outcome

ACTION_STYLES = {REAPED: "green", FAILED: "bold red"}


def print_outcomes(outcomes: list[Outcome], console: Console, *, as_json: bool) -> None:
    """A table of what the reaper did, or (as_json) a JSON list on stdout."""
    if as_json:
        print(json.dumps([outcome.as_dict() for outcome in outcomes], indent=2))
        return
    table = Table(title="stack.reap")
    for column in ("stack", "action", "expires-at", "detail"):
        table.add_column(column)
    for outcome in outcomes:
        style = ACTION_STYLES.get(outcome.action, "")
        table.add_row(outcome.stack, f"[{style}]{outcome.action}[/]" if style else outcome.action,
                      outcome.expires_at, outcome.detail)
    console.print(table if outcomes else "stack.reap: the backend has no stacks for this project")
