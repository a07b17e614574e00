"""Ephemeral test stacks: a base env's config under a unique name, tagged with when it expires."""
import copy
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from infra.lifecycle.ephemeral_network import ephemeral_network
from infra.lifecycle.federation import in_pipeline
from infra.lifecycle.operations import PrintLine, run_operation
from infra.lifecycle.stack_files import LIFECYCLE_KEY, write_atomically
from infra.stack.stack_config import (ORGANIZATION, PROJECT, SettingsError, load_stack, project_values, read_stack_file,
                                stack_file)

NAME = re.compile(r"^[a-z][a-z0-9-]{0,16}[a-z0-9]$")
TTL = re.compile(r"^([1-9][0-9]{0,4})([mhd])$")
TTL_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
MIN_TTL, MAX_TTL = timedelta(minutes=15), timedelta(days=7)
# Parts of a base env that belong to that env alone: an ephemeral copy must not register build agents into the
# base env's pools, recreate its Azure DevOps objects, adopt its explicitly named Azure resources, or run a second
# receiver of its sites' reports (its fixed IP is in the base's address block, its status store the base's).
SHARED_SETTINGS_OFF = {"agents": {"enabled": False}, "devops": {"enabled": False}}
BASE_ONLY_SETTINGS = ("names", "fleetReceiver")
EPHEMERAL_TAG, EXPIRES_TAG, BASE_TAG = "ephemeral", "expires-at", "base-env"


@dataclass(frozen=True)
class EphemeralStack:
    """A new ephemeral stack, ready to create: its name, base env, expiry and derived config."""

    name: str
    base: str
    expires_at: datetime
    config: dict[str, Any]

    def tags(self) -> dict[str, str]:
        return {EPHEMERAL_TAG: "true", EXPIRES_TAG: iso(self.expires_at), BASE_TAG: self.base}


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ttl(ttl: str) -> timedelta:
    """'4h' -> 4 hours; raises ValueError saying what is allowed."""
    match = TTL.match(ttl)
    if not match:
        raise ValueError(f"{ttl!r} is not a duration; use a number and m, h or d, e.g. 90m, 4h, 2d")
    duration = timedelta(**{TTL_UNITS[match[2]]: int(match[1])})
    if not MIN_TTL <= duration <= MAX_TTL:
        raise ValueError(f"{ttl!r} is outside {MIN_TTL} .. {MAX_TTL.days} days")
    return duration


def plan_ephemeral(name: str, ttl: str, base: str, root: Path, now: datetime) -> EphemeralStack:
    """Validate the request and derive the new stack; raises SettingsError listing every problem."""
    problems = []
    if not NAME.match(name) or "--" in name:
        problems.append(f"--name: {name!r} must be 2-18 lowercase letters, digits and single hyphens, starting "
                        "with a letter (a unique suffix is added)")
    try:
        duration = parse_ttl(ttl)
    except ValueError as err:
        problems.append(f"--ttl: {err}")
    try:
        base_config = read_stack_file(stack_file(base, root))
        base_stack = load_stack(project_values(base_config), source=f"Pulumi.{base}.yaml", env=base,
                                organization=ORGANIZATION)
    except SettingsError as err:
        problems += [f"--from: {p}" for p in err.problems]
    if problems:
        raise SettingsError(problems)
    stack = _unique_name(name, root)
    expires_at = now + duration
    config = derive_config(base_config, expires_at)
    config[f"{PROJECT}:network"] = ephemeral_network(base_stack, base_config[f"{PROJECT}:network"], stack)
    if in_pipeline(os.environ):
        config[f"{PROJECT}:cluster"] = pipeline_kubelogin(config[f"{PROJECT}:cluster"])
    load_stack(project_values(config), source=f"Pulumi.{stack}.yaml (from Pulumi.{base}.yaml)", env=stack,
               organization=ORGANIZATION)
    return EphemeralStack(name=stack, base=base, expires_at=expires_at, config=config)


def derive_config(base_config: dict[str, Any], expires_at: datetime) -> dict[str, Any]:
    """The base config, minus secrets and base-only parts, with an ephemeral lifecycle."""
    config = {key: copy.deepcopy(value) for key, value in base_config.items()
              if not (isinstance(value, dict) and "secure" in value)}
    for key in BASE_ONLY_SETTINGS:
        config.pop(f"{PROJECT}:{key}", None)
    for key, override in SHARED_SETTINGS_OFF.items():
        if f"{PROJECT}:{key}" in config:
            config[f"{PROJECT}:{key}"] = dict(override)
    config[LIFECYCLE_KEY] = {"protected": False, "ephemeral": True, "expiresAt": iso(expires_at)}
    return config


def pipeline_kubelogin(cluster: dict[str, Any]) -> dict[str, Any]:
    """A copy made in a pipeline step signs its Kubernetes providers in as the pipeline does: kubelogin
    azurepipelines asks the job's OIDC endpoint at every token, where an azurecli login made once from a 10-minute
    ID token would fail later in the run (Azure/azure-cli#28708)."""
    return {**cluster, "kubelogin": {"method": "azurepipelines"}}


def create_ephemeral(workspace: auto.LocalWorkspace, root: Path, planned: EphemeralStack,
                     print_line: PrintLine) -> str:
    """Write the stack file, create and tag the stack, then `up`; returns the change summary.

    If the stack cannot be created and tagged, the file and stack are removed again. If `up` fails, the tagged stack
    stays for the reaper (or an explicit destroy) and auto.CommandError propagates.
    """
    path = stack_file(planned.name, root)
    write_atomically(path, planned.config)
    try:
        stack = auto.Stack.create(planned.name, workspace)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    try:
        for key, value in planned.tags().items():
            stack.set_tag(key, value)
    except BaseException:
        workspace.remove_stack(planned.name)
        path.unlink(missing_ok=True)
        raise
    return run_operation(stack, "up", print_line)


def _unique_name(name: str, root: Path) -> str:
    while True:
        candidate = f"{name}-{secrets.token_hex(3)}"
        if not stack_file(candidate, root).exists():
            return candidate
