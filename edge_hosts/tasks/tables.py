"""What the edge tasks print: the results table or one JSON object, edge.status's table and notes, edge.trust's survey.

rich loads only when something is drawn, so a --json run does not pay for it."""
from __future__ import annotations

import textwrap
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from edge_hosts.engine.results import HostResult, STYLE, summary_json

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text


def print_results(site: str, results: list[HostResult], as_json: bool) -> None:
    """One JSON object on stdout, or the results table (rich loads only for the table)."""
    if as_json:
        print(summary_json(site, results))
        return
    from rich.console import Console

    from common.terminal import emit

    emit(Console(), results_table(site, results))


def results_table(site: str, results: list[HostResult]) -> Table:
    """host, status, and what changed (one line per step) or why it failed; fits 80 columns, wraps at spaces."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"site {site}", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("host", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("changes / reason", overflow="fold")  # wraps at spaces; folds only a path wider than the column
    for r in results:
        cell = Text("\n".join(grouped(r.changed)))
        if r.error:
            cell.append(("\n" if r.changed else "") + r.error, style="red")
        table.add_row(r.name, Text(r.status, style=STYLE[r.status]), cell)
    return table


def grouped(changes: list[str]) -> list[str]:
    """'step: a', 'step: b' as 'step: a, b', steps in their first order; a remote path by its file name
    (whole paths are in --json: the airgap images' path alone is wider than the column)."""
    steps: dict[str, list[str]] = {}
    for change in changes:
        step, _, what = change.partition(": ")
        steps.setdefault(step, []).append(PurePosixPath(what).name if what.startswith("/") and " " not in what
                                          else what)
    return [f"{step}: {', '.join(w for w in whats if w)}".rstrip(": ") for step, whats in steps.items()]


def status_table(report: dict) -> Table:
    """edge.status as a table within 80 columns: addresses never split; errors go below it (status_errors)."""
    from rich import box
    from rich.table import Table

    pool = ", ".join(report["metallb"]["pool"] or ["none"])
    table = Table(title=f"site {report['site']} - MetalLB pool: {pool}", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("host", "address", "role", "service", "node", "version"):
        table.add_column(column, no_wrap=column in ("host", "address", "version"))
    for h in report["hosts"]:
        service = f"{h['service']} {'active' if h['active'] else 'inactive'}" if h["reachable"] else "unreachable"
        if h["reachable"] and not h.get("enabled", True):
            service += " disabled"  # systemd would not start it at boot
        table.add_row(h["name"], h["address"], h["role"], service, "Ready" if h["ready"] else "not Ready",
                      _version_cell(h["version"], h.get("certificates")))
    return table


def _version_cell(version: str | None, certificates: dict | None) -> Text:
    """The node's version; for a server a second line with the days until its first certificate expires (red
    under the warning threshold): a column of its own would not fit 80 columns."""
    from rich.text import Text

    cell = Text(version or "")
    if certificates:
        cell.append(f"\ncerts {certificates['daysLeft']}d", style="bold red" if certificates["warning"] else "green")
    return cell


def status_notes(report: dict, width: int = 80) -> list[str]:
    """Below the status table, wrapped: the kubeconfig's client certificate, then every certificate expiry
    warning."""
    from edge_hosts.operations.certs import warnings

    client, lines = report.get("kubeconfig"), []
    if client and client.get("error"):
        lines.append(f"kubeconfig {client['path']}: {client['error']}")
    elif client:
        lines.append(f"kubeconfig {client['path']}: client certificate of context {report['site']} expires "
                     f"{client['expires'][:10]} ({client['daysLeft']} days)")
    return [textwrap.fill(line, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
            for line in lines + [f"warning: {line}" for line in warnings(report)]]


def status_errors(report: dict, width: int = 80) -> list[str]:
    """One wrapped paragraph per host that reported an error."""
    return [textwrap.fill(f"{h['name']}: {h['error']}", width, subsequent_indent="  ", break_long_words=False,
                          break_on_hyphens=False) for h in report["hosts"] if h["error"]]


def trust_lines(found: list, width: int = 80) -> list[str]:
    """edge.trust's survey, two lines a host (name, known_hosts name, status; then key type and fingerprint)."""
    lines = []
    for result, _ in found:
        lines.append(f"  {result.host}  {result.name}  {result.status}")
        lines.append(f"      {result.key_type or '-'} {result.fingerprint or '-'}")
        if result.detail:
            lines += textwrap.wrap(result.detail, width, initial_indent="      ", subsequent_indent="      ",
                                   break_long_words=False, break_on_hyphens=False)
    return lines
