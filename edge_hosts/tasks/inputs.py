"""What every edge task shares: the site's inventory (exit 2 listing every problem), host selection, the artifact
source, the checks made before any host is contacted, confirmation, and how results end a task."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Exit


if TYPE_CHECKING:  # the rest loads inside the tasks: ./kit --list and other areas' tasks never pay for it
    from edge_hosts.artifacts.downloads import ArtifactSource
    from edge_hosts.inventory.model import Inventory


SITE_HELP = "site name (edge_hosts/sites/<name>.yaml) or path to an inventory file"

DEFAULT_METALLB = "v0.16.1"  # github.com/metallb/metallb/releases/tag/v0.16.1 (2026-05-27), newest


def site_inventory(site: str, problems: list[str], signs_in: bool = True) -> Inventory:
    """The site's inventory, its problems added to the task's `problems` (refuse() ends the task listing them
    all); an inventory that does not load exits 2 at once, with them. `signs_in`: the task logs in to the hosts,
    so the private keys (or the agent) and the sudo password must be usable before anything connects."""
    from edge_hosts.access.hostkeys import known_hosts_problem
    from edge_hosts.access.keys import key_problems
    from edge_hosts.inventory.load import InventoryError, load_inventory

    try:
        inventory = load_inventory(site)
    except InventoryError as err:
        raise Exit("\n".join([str(err), *problems]), code=2) from None
    known_hosts = known_hosts_problem(inventory.ssh.known_hosts)
    if known_hosts:
        problems.append(f"{inventory.source}: ssh.knownHosts: {known_hosts}")
    if signs_in:
        problems += key_problems(inventory)
        env = inventory.ssh.sudo_password_env
        if env and inventory.ssh.user != "root" and env not in os.environ:
            problems.append(f"{inventory.source}: ssh.sudoPasswordEnv: environment variable {env} is not set")
    return inventory


def refuse(problems: list[str]) -> None:
    """Exit 2 listing every problem found in a task's input; nothing was contacted or changed."""
    if problems:
        raise Exit("\n".join(problems), code=2)


def at_least_one(**options) -> list[str]:
    """A problem for each whole-number option under 1 (option names as Python spells them)."""
    return [f"--{name.replace('_', '-')}: must be at least 1, got {value}" for name, value in options.items()
            if int(value) < 1]


def kubeconfig_problems(path: Path) -> list[str]:
    """--kubeconfig names a file the site's context can be merged into (not a directory, its directory writable,
    any file there a kubeconfig): known before the run it would end."""
    from edge_hosts.access.kubeconfig import path_problem

    problem = path_problem(path)
    return [f"--kubeconfig {path}: {problem}"] if problem else []


def state_problems(inventory: Inventory) -> list[str]:
    """The site's state directory here (its tokens, its lock) can be written."""
    from common.files import write_problem
    from edge_hosts.access.sitelock import LocalLock

    problem = write_problem(LocalLock(inventory.site).path)
    return [f"the kit's state of site {inventory.site}: {problem}"] if problem else []


def selected_hosts(inventory: Inventory, hosts: str, problems: list[str]) -> list[str]:
    names = [h.name for h in inventory.hosts]
    wanted = [n.strip() for n in hosts.split(",") if n.strip()] or names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        problems.append(f"--hosts: unknown host(s) {', '.join(unknown)} (site {inventory.site} has "
                        f"{', '.join(names)})")
    return [n for n in names if n in wanted]


def artifact_source(inventory: Inventory, problems: list[str]) -> ArtifactSource | None:
    from edge_hosts.artifacts.downloads import ArtifactError, ArtifactSource

    try:
        return ArtifactSource(inventory)
    except ArtifactError as err:
        problems.append(f"{inventory.source}: bundle: {err}")
        return None


def check_fleet_input(inventory: Inventory, problems: list[str]) -> None:
    """A fleet site's rendered Flux objects and its registry and notification credentials, before any connection."""
    if inventory.fleet is None:
        return
    from edge_hosts.steps.fleet import FleetInputError, onsite_manifest

    try:
        onsite_manifest(inventory)
    except FleetInputError as err:
        problems.append(str(err))


def check_registries(inventory: Inventory, problems: list[str]) -> None:
    """The site's registries.yaml can be made: its registry credential resolves (the problem names its source)."""
    from edge_hosts.inventory.credentials import CredentialError
    from edge_hosts.inventory.registries import registries_file

    try:
        registries_file(inventory)
    except CredentialError as err:
        problems.append(str(err))


def warn_site(inventory: Inventory) -> None:
    """Site-wide warnings (offline: pins past end of support, no apiEndpoint for HA, speakerless nodes), on stderr."""
    from datetime import date

    from common.terminal import terminal_columns, wrap
    from edge_hosts.inventory.advice import site_warnings

    for note in site_warnings(inventory, date.today()):
        print(wrap(f"warning: {note}", terminal_columns(sys.stderr)), file=sys.stderr)


def finish(site: str, results, as_json: bool, interrupted: bool = False) -> None:
    """Print the results; exit 130 when the run was interrupted (saying how to go on), 1 when a host failed."""
    from edge_hosts.tasks.tables import print_results

    print_results(site, results, as_json)
    if interrupted:
        stopped = [r.name for r in results if r.status == "stopped"]
        raise Exit(f"interrupted (Ctrl-C): {len(stopped)} host(s) stopped{': ' + ', '.join(stopped) if stopped else ''}"
                   f". Run the same command again to continue: every step checks before it changes, so what is "
                   f"done is skipped", code=130)
    exit_if_failed(results, as_json)


def exit_if_failed(results, as_json: bool) -> None:
    """Exit 1 when a host failed or was stopped (the site's lock lost); the results are already printed."""
    failed = [r.name for r in results if r.status in ("failed", "stopped")]
    if failed:
        raise Exit(f"failed on {len(failed)} host(s): {', '.join(failed)}" if not as_json else None, code=1)


def confirmed(question: str, command: str) -> bool:
    """Whether the user answers yes at the terminal; exit 2 (use --yes) when stdin is not a terminal, so a pipe,
    a file or a CI job never answers a destructive question (an end of input at the terminal is a no)."""
    if not sys.stdin.isatty():
        raise Exit(f"{command}: stdin is not a terminal, so nobody can answer \"{question}\": "
                   "give --yes to go ahead without asking", code=2)
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def confirm(question: str, command: str) -> None:
    """Ask before a destructive command; anything but yes ends it with nothing done (exit 1)."""
    if not confirmed(question, command):
        raise Exit(f"{command}: nothing done", code=1)
