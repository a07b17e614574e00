"""The Automation API workspace on the repo's real Pulumi.yaml and Pulumi.<stack>.yaml files."""
from pathlib import Path

from pulumi import automation as auto
from semver import VersionInfo

from infra.lifecycle.backend import Backend

MINIMUM_CLI = VersionInfo(3, 211, 0)  # the first CLI that keeps stack tags on self-managed (file, blob) backends


def open_workspace(root: Path, backend: Backend) -> auto.LocalWorkspace:
    """A LocalWorkspace whose work_dir is the project root, so `pulumi` runs the real program and stack files."""
    backend.ensure_local_state()
    return auto.LocalWorkspace(work_dir=str(root), env_vars=backend.env_vars(),
                               secrets_provider=backend.secrets_provider,
                               pulumi_command=auto.PulumiCommand(version=MINIMUM_CLI))


def select(workspace: auto.LocalWorkspace, stack: str) -> auto.Stack:
    """An existing stack; raises auto.StackNotFoundError when the backend has none by that name."""
    return auto.Stack.select(stack, workspace)


def create_or_select(workspace: auto.LocalWorkspace, stack: str) -> auto.Stack:
    return auto.Stack.create_or_select(stack, workspace)


def short_name(listed: str) -> str:
    """`org/project/stack` or `stack` (how backends list stacks) -> `stack`."""
    return listed.rsplit("/", 1)[-1]


def failure_summary(error: auto.CommandError) -> str:
    """The last error line the CLI printed (Pulumi masks secret values in its own output)."""
    text = str(error).split("\n stderr: ", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    return (errors or lines or ["pulumi failed without a message"])[-1]
