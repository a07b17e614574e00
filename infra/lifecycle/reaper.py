"""The reaper: destroy and remove every expired ephemeral stack, in parallel, never anything else."""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pulumi import automation as auto

from infra.lifecycle.ephemeral import EPHEMERAL_TAG, EXPIRES_TAG, iso
from infra.lifecycle.stack_files import stack_lifecycle
from infra.lifecycle.workspace import failure_summary, select, short_name
from infra.stack.stack_config import SettingsError, stack_file

REAPED, GONE, WOULD_REAP, KEPT, SKIPPED, FAILED = "reaped", "already gone", "would reap", "kept", "skipped", "failed"


@dataclass(frozen=True)
class Outcome:
    """What the reaper did with one stack, and why."""

    stack: str
    action: str
    detail: str
    expires_at: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"stack": self.stack, "action": self.action, "detail": self.detail, "expiresAt": self.expires_at}


def reap(workspace: auto.LocalWorkspace, root: Path, now: datetime, *, dry_run: bool, parallel: int) -> list[Outcome]:
    """Look at every stack of the project; destroy + remove the expired ephemeral ones (up to `parallel` at once)."""
    names = [short_name(summary.name) for summary in workspace.list_stacks()]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        outcomes = pool.map(lambda name: _reap_one(workspace, root, name, now, dry_run), names)
        return sorted(outcomes, key=lambda outcome: outcome.stack)


def _reap_one(workspace: auto.LocalWorkspace, root: Path, name: str, now: datetime, dry_run: bool) -> Outcome:
    try:
        tags = workspace.list_tags(name)
    except auto.StackNotFoundError:
        return Outcome(name, GONE, "removed while the reaper ran")
    except auto.CommandError as err:
        return Outcome(name, FAILED, f"cannot read its tags: {failure_summary(err)}")
    verdict = _verdict(root, name, tags, now)
    if verdict:
        return verdict
    expires = tags[EXPIRES_TAG]
    if dry_run:
        return Outcome(name, WOULD_REAP, "expired; dry run", expires)
    return _destroy_and_remove(workspace, root, name, expires)


def _verdict(root: Path, name: str, tags: dict[str, str], now: datetime) -> Outcome | None:
    """An Outcome for a stack that must not be reaped now, or None when it is an expired ephemeral stack."""
    if tags.get(EPHEMERAL_TAG) != "true":
        return Outcome(name, SKIPPED, "not tagged ephemeral=true")
    expires = tags.get(EXPIRES_TAG, "")
    try:
        expires_at = datetime.fromisoformat(expires)
        expired = expires_at <= now
    except (TypeError, ValueError):
        return Outcome(name, FAILED, f"tag {EXPIRES_TAG}={expires!r} is not an ISO 8601 time with a zone; fix or "
                                     "remove it by hand", expires)
    if not expired:
        return Outcome(name, KEPT, f"expires in {_remaining(expires_at - now)}", iso(expires_at))
    try:
        lifecycle = stack_lifecycle(root, name)
    except SettingsError as err:
        return Outcome(name, FAILED, f"tagged ephemeral but its stack file is invalid: {err.problems[0]}", expires)
    if lifecycle is not None and not lifecycle.ephemeral:
        return Outcome(name, FAILED, f"tagged ephemeral but Pulumi.{name}.yaml says it is not; left alone", expires)
    return None


def _destroy_and_remove(workspace: auto.LocalWorkspace, root: Path, name: str, expires: str) -> Outcome:
    try:
        select(workspace, name).destroy()
        workspace.remove_stack(name)
    except auto.StackNotFoundError:
        stack_file(name, root).unlink(missing_ok=True)
        return Outcome(name, GONE, "removed while the reaper ran", expires)
    except auto.CommandError as err:
        return Outcome(name, FAILED, f"{failure_summary(err)} (kept; retried at the next reap)", expires)
    stack_file(name, root).unlink(missing_ok=True)
    return Outcome(name, REAPED, "destroyed and removed", expires)


def _remaining(delta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"
