"""./kit preview|up|refresh|destroy --env X, and the `stack` collection: stack.ephemeral, stack.reap."""
from __future__ import annotations

import json as json_module
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path

from typing import TYPE_CHECKING

from invoke import Collection, Exit, task

from infra.lifecycle.backend import OptionsError, resolve_backend
from infra.lifecycle.federation import FederationError, federated_login
from infra.lifecycle.preflight import PreflightError, preflight
from infra.stack.stack_config import ROOT, SettingsError

if TYPE_CHECKING:  # Pulumi, rich and the settings models load inside the tasks: ./kit --list never imports them
    from pulumi import automation as auto

ENV_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
CONNECTION_HELP = {
    "backend": "state backend URL (default: $PULUMI_BACKEND_URL, else file://~/.pulumi-mlops-edge-kit)",
    "secrets_provider": "secrets provider for new stacks: passphrase (default; PULUMI_CONFIG_PASSPHRASE[_FILE] "
                        "from the environment) or azurekeyvault://<vault>.vault.azure.net/keys/<key>",
    "project_dir": "directory holding Pulumi.yaml and the stack files (default: the kit's repo root)",
}
ENV_HELP = {"env": "stack name (a Pulumi.<env>.yaml in the project directory)", **CONNECTION_HELP}


@contextmanager
def reported(what: str) -> Iterator[None]:
    """Bad input, missing prerequisites and refusals: a clear message, exit 2. A failed Pulumi command: exit 1."""
    from pulumi import automation as auto

    from infra.lifecycle.guards import DestroyRefused
    from infra.lifecycle.workspace import failure_summary

    try:
        yield
    except (SettingsError, OptionsError, PreflightError, FederationError) as err:
        raise Exit(f"{what}:\n" + "\n".join(f"  {problem}" for problem in err.problems), code=2) from None
    except DestroyRefused as err:
        raise Exit(f"{what}: {err}", code=2) from None
    except auto.StackNotFoundError:
        raise Exit(f"{what}: the backend has no such stack (create it with ./kit up)", code=2) from None
    except auto.InvalidVersionError as err:
        raise Exit(f"{what}: unusable Pulumi CLI: {err}", code=2) from None
    except auto.CommandError as err:
        raise Exit(f"{what} failed: {failure_summary(err)}", code=1) from None


def _project(project_dir: str) -> Path:
    return Path(project_dir).resolve() if project_dir else ROOT


def _check_env(env: str) -> None:
    if not ENV_NAME.match(env):
        raise SettingsError([f"--env: {env!r} is not a stack name (lowercase letters, digits, '.', '_', '-')"])


def _workspace(session: ExitStack, root: Path, backend: str, secrets_provider: str, *,
               deploys: bool = True) -> auto.LocalWorkspace:
    """The checked workspace; in a pipeline step that deploys, its federated login lives as long as `session`."""
    from infra.lifecycle.workspace import open_workspace

    resolved = resolve_backend(backend, secrets_provider)
    preflight(resolved, deploys=deploys)
    if deploys:
        session.enter_context(federated_login())
    return open_workspace(root, resolved)


def _operate(operation: str, env: str, backend: str, secrets_provider: str, project_dir: str,
             expect_no_changes: bool = False) -> None:
    from rich.console import Console

    from infra.lifecycle.operations import run_operation
    from infra.lifecycle.stack_files import validated_stack
    from infra.lifecycle.workspace import create_or_select, select

    root, console = _project(project_dir), Console(highlight=False)
    with ExitStack() as session, reported(f"{operation} {env}"):
        _check_env(env)
        validated_stack(root, env)
        workspace = _workspace(session, root, backend, secrets_provider)
        stack = (create_or_select if operation in ("preview", "up") else select)(workspace, env)
        changes = run_operation(stack, operation, console.out, expect_no_changes=expect_no_changes)
    console.print(f"{operation} {env}: {changes}")


@task(help={**ENV_HELP, "expect_no_changes": "fail when the stack would change (drift / smoke check)"})
def preview(c, env, expect_no_changes=False, backend="", secrets_provider="", project_dir=""):
    """Preview an environment's changes with the Pulumi CLI (needs pulumi, an Azure login, the secrets passphrase)."""
    _operate("preview", env, backend, secrets_provider, project_dir, expect_no_changes)


@task(help=ENV_HELP)
def up(c, env, backend="", secrets_provider="", project_dir=""):
    """Create or update an environment (creates the stack in the backend on first use)."""
    _operate("up", env, backend, secrets_provider, project_dir)


@task(help=ENV_HELP)
def refresh(c, env, backend="", secrets_provider="", project_dir=""):
    """Refresh an environment's state from Azure."""
    _operate("refresh", env, backend, secrets_provider, project_dir)


@task(help={**ENV_HELP, "force": "allow destroying a protected or non-ephemeral env (then type its name back)",
            "confirm": "the env name typed back, for non-interactive use with --force",
            "remove": "also remove the stack from the backend (and its Pulumi.<env>.yaml) once destroyed"})
def destroy(c, env, force=False, confirm="", remove=False, backend="", secrets_provider="", project_dir=""):
    """Destroy an environment's resources; protected and non-ephemeral envs need --force and the name typed back."""
    from rich.console import Console
    from rich.prompt import Prompt

    from infra.lifecycle.guards import check_destroy
    from infra.lifecycle.operations import run_operation
    from infra.lifecycle.stack_files import stack_lifecycle
    from infra.lifecycle.workspace import select

    root, console = _project(project_dir), Console(highlight=False)
    with ExitStack() as session, reported(f"destroy {env}"):
        _check_env(env)
        ask = (lambda question: Prompt.ask(question, console=console)) if sys.stdin.isatty() else None
        check_destroy(env, stack_lifecycle(root, env), force=force, confirm=confirm, ask=ask)
        workspace = _workspace(session, root, backend, secrets_provider)
        stack = select(workspace, env)
        changes = run_operation(stack, "destroy", console.out)
        if remove:
            workspace.remove_stack(env)
    console.print(f"destroy {env}: {changes}" + ("; stack removed" if remove else ""))


@task(name="ephemeral", help={
    "name": "short name, e.g. pr-123 (a unique suffix is added)", "ttl": "time to live: 15m .. 7d, e.g. 4h",
    "from_": "base env whose config is copied (default qa)", "json": "print the result as JSON on stdout",
    **CONNECTION_HELP})
def ephemeral(c, name, ttl, from_="qa", json=False, backend="", secrets_provider="", project_dir=""):
    """Create an ephemeral stack from a base env, tagged ephemeral=true and expires-at, then `up` it."""
    from rich.console import Console

    from infra.lifecycle.ephemeral import create_ephemeral, iso, plan_ephemeral

    root, console = _project(project_dir), Console(stderr=json, highlight=False)
    with ExitStack() as session:
        with reported("stack.ephemeral"):
            _check_env(from_)
            planned = plan_ephemeral(name, ttl, from_, root, datetime.now(timezone.utc))
            workspace = _workspace(session, root, backend, secrets_provider)
        console.print(f"stack.ephemeral: creating {planned.name} from {from_}, expires at {iso(planned.expires_at)}")
        with reported(f"stack.ephemeral {planned.name} (tagged; the reaper removes it after expiry)"):
            changes = create_ephemeral(workspace, root, planned, console.out)
    result = {"stack": planned.name, "base": from_, "expiresAt": iso(planned.expires_at), "changes": changes}
    if json:
        print(json_module.dumps(result))
    else:
        console.print(f"stack.ephemeral: {planned.name} is up ({changes}); expires at {result['expiresAt']}")


@task(name="reap", help={"dry_run": "only report what would be reaped (needs no Azure login)",
                         "json": "print the outcome as JSON on stdout",
                         "parallel": "stacks destroyed at once (default 4)", **CONNECTION_HELP})
def reap(c, dry_run=False, json=False, parallel=4, backend="", secrets_provider="", project_dir=""):
    """Destroy and remove every ephemeral stack whose expires-at has passed; never touches any other stack."""
    from rich.console import Console

    from infra.lifecycle.reaper import FAILED, reap as reap_stacks
    from infra.lifecycle.report import print_outcomes

    root, console = _project(project_dir), Console(highlight=False)
    try:
        with ExitStack() as session, reported("stack.reap"):
            if not 1 <= int(parallel) <= 32:
                raise SettingsError([f"--parallel: {parallel} is outside 1 .. 32"])
            workspace = _workspace(session, root, backend, secrets_provider, deploys=not dry_run)
            outcomes = reap_stacks(workspace, root, datetime.now(timezone.utc), dry_run=dry_run,
                                   parallel=int(parallel))
    except Exit as err:
        if json:  # --json means JSON on stdout, failures included; the message still goes to stderr
            print(json_module.dumps({"error": err.message, "exitCode": err.code}))
        raise
    print_outcomes(outcomes, console, as_json=json)
    failed = [outcome.stack for outcome in outcomes if outcome.action == FAILED]
    if failed:
        raise Exit(f"stack.reap: {len(failed)} failed ({', '.join(failed)}); they are retried at the next reap",
                   code=1)


stack = Collection("stack", ephemeral, reap)
