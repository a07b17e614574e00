"""The lifecycle tests' world: a scratch project, the stand-in `pulumi` and `az` first on PATH, a file backend."""
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from invoke import Context, Exit

from infra.lifecycle.backend import resolve_backend
from infra.lifecycle.ephemeral import create_ephemeral, plan_ephemeral
from infra.lifecycle.workspace import open_workspace
from tests.lifecycle.standin.environment import UNSET, scratch_project, standin_environment


@dataclass
class Project:
    """A scratch copy of the repo's Pulumi project, its stand-in backend and the stand-ins' logs."""

    root: Path
    backend: Path
    log: Path
    az_login: Path

    def calls(self) -> list[list[str]]:
        """argv of every stand-in pulumi invocation, without --non-interactive."""
        return [[a for a in r["argv"] if a != "--non-interactive"] for r in self.records()]

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def az_calls(self) -> list[str]:
        az_log = Path(f"{self.log}.az")
        return az_log.read_text().splitlines() if az_log.exists() else []

    def operations(self, operation: str) -> list[str]:
        """Stacks `operation` (up, destroy, ...) ran on, in order."""
        return [call[call.index("--stack") + 1] for call in self.calls() if call[:1] == [operation]]

    def stacks(self) -> list[str]:
        return sorted(p.stem for p in (self.backend / ".pulumi" / "stacks" / "mlops-edge-kit").glob("*.json"))

    def state(self, stack: str) -> dict:
        return json.loads((self.backend / ".pulumi" / "stacks" / "mlops-edge-kit" / f"{stack}.json").read_text())

    def fail(self, operation: str, stack: str) -> Path:
        marker = self.backend / f"fail-{operation}-{stack}"
        marker.write_text("injected by the test\n")
        return marker

    def run(self, task, **options) -> None:
        """Run a lifecycle task in-process against this project."""
        task(Context(), project_dir=str(self.root), **options)

    def exit_of(self, task, **options) -> Exit:
        with pytest.raises(Exit) as caught:
            self.run(task, **options)
        return caught.value

    def ephemeral(self, name: str, *, age: timedelta, ttl: str = "1h", base: str = "qa") -> str:
        """Create an ephemeral stack as if made `age` ago (so it may have expired); returns its name."""
        planned = plan_ephemeral(name, ttl, base, self.root, datetime.now(timezone.utc) - age)
        create_ephemeral(open_workspace(self.root, resolve_backend()), self.root, planned, lambda line: None)
        return planned.name


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Project:
    root = scratch_project(tmp_path)
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    for name, value in standin_environment(tmp_path, os.environ["PATH"]).items():
        monkeypatch.setenv(name, value)
    return Project(root=root, backend=tmp_path / "state", log=tmp_path / "pulumi.log",
                   az_login=tmp_path / "az-logged-in")
