"""Invoke collection `agents`: build the image, pin the agent release, pool status and clean-up.

The Azure DevOps credential comes from the environment (AZP_TOKEN, or AZURE_DEVOPS_EXT_PAT as
the az devops CLI uses) or from --token-file, never from the command line.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from typing import TYPE_CHECKING

from invoke import Collection, Exit, task

if TYPE_CHECKING:  # pydantic, rich and the clients load inside the tasks, so ./kit --list does not pay for them
    from agents.azdo import AzdoClient, AzdoError
    from agents.pool_args import PoolArgs

TOKEN_ENV = ("AZP_TOKEN", "AZURE_DEVOPS_EXT_PAT")


def _validated(model, command: str, more: tuple[str, ...] = (), **values):
    """The (pydantic) model, or Exit(2) listing every invalid argument, and the `more` problems, at once."""
    from pydantic import ValidationError

    lines = [f"  {problem}" for problem in more if problem]
    try:
        validated = model(**values)
    except ValidationError as err:
        lines = [f"  --{str(e['loc'][0]).replace('_', '-')}: {e['msg'].removeprefix('Value error, ')}"
                 for e in err.errors()] + lines
    if lines:
        raise Exit(f"{command}: invalid arguments:\n" + "\n".join(lines), code=2) from None
    return validated


def _token(token_file: str) -> tuple[str, str]:
    """(the Azure DevOps token, "") or ("", what is wrong with how it was given)."""
    if token_file:
        path = Path(token_file)
        if not path.is_file() or not os.access(path, os.R_OK):
            return "", f"--token-file {token_file}: not a readable file"
        token = path.read_text().strip()
    else:
        token = next((os.environ[name].strip() for name in TOKEN_ENV if os.environ.get(name)), "")
    if not token:
        return "", ("no Azure DevOps token: set AZP_TOKEN (a PAT with 'Agent Pools (Read & manage)') or pass "
                    "--token-file")
    return token, ""


def _client(command: str, token_file: str, **values) -> tuple[PoolArgs, AzdoClient]:
    """The validated pool arguments and a client, or Exit(2) naming every missing or invalid one at once."""
    from agents.azdo import AzdoClient
    from agents.pool_args import PoolArgs

    token, problem = _token(token_file)
    args = _validated(PoolArgs, command, (problem,), **values)
    return args, AzdoClient(args.org, token)


def _fail(command: str, err: AzdoError):
    raise Exit(f"{command}: {err}", code=2 if err.user_error else 1) from None


POOL_HELP = {"pool": "agent pool name", "org": "organization URL (default: $AZP_URL)",
             "token_file": "file holding the PAT (default: $AZP_TOKEN or $AZURE_DEVOPS_EXT_PAT)"}


@task(help=POOL_HELP)
def status(c, pool="", org="", token_file=""):
    """Agents of a pool: online/offline, enabled, busy, version, age."""
    from rich.console import Console
    from rich.table import Table

    from agents.azdo import AzdoError

    console = Console()
    args, client = _client("agents.status", token_file, org=org or os.environ.get("AZP_URL", ""), pool=pool)
    try:
        agents = client.agents(client.pool_id(args.pool))
    except AzdoError as err:
        _fail("agents.status", err)
    table = Table(title=f"pool {args.pool}: {len(agents)} agents")
    for column in ("name", "status", "enabled", "busy", "version", "created"):
        table.add_column(column)
    for agent in sorted(agents, key=lambda a: a.name):
        table.add_row(agent.name, agent.status, "yes" if agent.enabled else "no",
                      "busy" if agent.busy else "idle", agent.version or "-",
                      agent.created_on.strftime("%Y-%m-%d %H:%M") if agent.created_on else "-")
    console.print(table)
    online = sum(a.online for a in agents)
    console.print(f"{online} online, {len(agents) - online} offline, {sum(a.busy for a in agents)} busy")


@task(help={**POOL_HELP, "older_than": "delete agents offline for longer than this (30m, 2h, 7d)",
            "dry_run": "only show what would be deleted"})
def cleanup(c, pool="", org="", token_file="", older_than="2h", dry_run=False):
    """Delete offline agents older than --older-than (never online, busy or placeholder agents)."""
    from rich.console import Console
    from rich.table import Table

    from agents.azdo import AzdoError
    from agents.ops import apply_cleanup, parse_duration, plan_cleanup

    console = Console()
    args, client = _client("agents.cleanup", token_file, org=org or os.environ.get("AZP_URL", ""), pool=pool,
                           older_than=older_than)
    try:
        pool_id, decisions = plan_cleanup(client, args.pool, parse_duration(args.older_than))
        table = Table(title=f"pool {args.pool}: offline for more than {args.older_than} is deleted")
        for column in ("name", "status", "action", "reason"):
            table.add_column(column)
        for d in decisions:
            action = ("would delete" if dry_run else "delete") if d.delete else "keep"
            table.add_row(d.agent.name, d.agent.status, action, d.reason)
        console.print(table)
        if dry_run:
            console.print(f"dry run: {sum(d.delete for d in decisions)} agents would be deleted")
            return
        deleted = apply_cleanup(client, pool_id, decisions)
    except AzdoError as err:
        _fail("agents.cleanup", err)
    console.print(f"deleted {len(deleted)} agents, kept {len(decisions) - len(deleted)}")


@task(help={"registry": "registry host, e.g. myacr.azurecr.io",
            "platforms": "comma-separated: linux/amd64,linux/arm64,linux/arm/v7 (default: all)",
            "tag": "image tag (default: the agent version from agent.lock)",
            "push": "push the image (otherwise build only)"})
def build(c, registry="", platforms="", tag="", push=False):
    """Build the agent image for all architectures with docker buildx."""
    from rich.console import Console

    from agents import build as image_build

    console = Console()
    platforms = platforms or ",".join(image_build.PLATFORMS)
    lock = image_build.read_lock()
    args = _validated(image_build.BuildArgs, "agents.build", registry=registry,
                      platforms=[p.strip() for p in platforms.split(",") if p.strip()],
                      tag=tag or lock.get("AGENT_VERSION", ""))
    try:
        image_build.check_docker()
        image_build.require_evidence(lock)
        build_args = {**image_build.build_args_from_lock(lock, args.platforms),
                      **image_build.tool_build_args(lock, args.platforms)}
    except image_build.BuildError as err:
        raise Exit(f"agents.build: {err}", code=1) from None
    command = image_build.buildx_command(args, build_args, push)
    console.print(f"building {image_build.image_ref(args)} for {', '.join(args.platforms)}")
    console.print(shlex.join(command), style="dim")
    if subprocess.run(command).returncode != 0:
        raise Exit("agents.build: docker buildx build failed (see its output above)", code=1)


@task(help={"version": "agent release to pin, e.g. 4.275.0"})
def lock_agent(c, version=""):
    """Pin an agent release: write its version and published SHA-256 sums to agent.lock."""
    from rich.console import Console

    from agents import build as image_build

    console = Console()
    if not version or not all(part.isdigit() for part in version.split(".")) or version.count(".") != 2:
        raise Exit(f"agents.lock-agent: --version {version!r} must look like 4.275.0", code=2)
    try:
        sums = image_build.published_checksums(version)
    except image_build.BuildError as err:
        raise Exit(f"agents.lock-agent: {err}", code=1) from None
    image_build.write_lock(version, sums)
    console.print(f"pinned agent {version} in {image_build.LOCK_FILE}")


@task
def lock_tools(c):
    """Pin the image's tools: fill agent.lock's SHA-256 per platform for the Pulumi CLI, kubectl and kubelogin
    versions it names, from each project's published checksums."""
    from rich.console import Console

    from agents import build as image_build

    try:
        sums = image_build.published_tool_checksums(image_build.read_lock())
    except image_build.BuildError as err:
        raise Exit(f"agents.lock-tools: {err}", code=1) from None
    image_build.update_lock(sums)
    Console().print(f"pinned {len(sums)} tool checksums in {image_build.LOCK_FILE}")


agents = Collection("agents")
for _task in (status, cleanup, build, lock_agent, lock_tools):
    agents.add_task(_task)
