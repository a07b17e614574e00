"""The lifecycle tests' world: a scratch project, the stand-in `pulumi` and `az` first on PATH, a file backend."""
import json
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from invoke import Context, Exit

from infra.lifecycle.backend import resolve_backend
from infra.lifecycle.ephemeral import create_ephemeral, plan_ephemeral
from infra.lifecycle.workspace import open_workspace
from infra.stack_config import ROOT, available_envs

STANDIN = Path(__file__).parent / "standin"
PASSPHRASE = "correct-horse-battery-staple-4711"
AZURE_VARS = ("ARM_CLIENT_ID", "ARM_TENANT_ID", "ARM_SUBSCRIPTION_ID", "ARM_CLIENT_SECRET", "ARM_USE_OIDC",
              "ARM_USE_MSI", "ARM_CLIENT_CERTIFICATE_PATH", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_BACKEND_URL")


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
    root = tmp_path / "project"
    root.mkdir()
    for name in ["Pulumi.yaml"] + [f"Pulumi.{env}.yaml" for env in available_envs()]:
        shutil.copy(ROOT / name, root / name)
    backend = tmp_path / "state"
    for name in AZURE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", f"{STANDIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_PYTHON", sys.executable)
    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "pulumi.log"))
    monkeypatch.setenv("STANDIN_AZ_LOGIN", str(tmp_path / "az-logged-in"))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{backend}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    (tmp_path / "az-logged-in").write_text("")
    return Project(root=root, backend=backend, log=tmp_path / "pulumi.log", az_login=tmp_path / "az-logged-in")
