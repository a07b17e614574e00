"""Recordings of the real platform program for every stack file in the repo, made once per test session."""
import re
import shutil
from pathlib import Path

import pytest
import yaml

from infra.offline.plan import record_env
from infra.offline.runtime import Recording
from infra.stack.stack_config import ROOT, available_envs

ENVS = available_envs()


@pytest.fixture(scope="session")
def recordings() -> dict[str, Recording]:
    return {env: record_env(env) for env in ENVS}


@pytest.fixture
def stack_root(tmp_path: Path):
    """A scratch repo root holding a copy of Pulumi.dev.yaml; returns a function that edits it and returns the env."""
    def write(edit, env: str = "dev") -> str:
        document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
        edit(document["config"])
        (tmp_path / f"Pulumi.{env}.yaml").write_text(yaml.safe_dump(document))
        return env
    return write


def settings_of(config: dict, key: str) -> dict:
    return config[f"mlops-edge-kit:{key}"]


def expect_problems(problems: list[str], *patterns: str) -> None:
    """Every pattern matches some problem line (which must name the stack file)."""
    for line in problems:
        assert line.startswith("Pulumi.dev.yaml: "), line
    for pattern in patterns:
        assert any(re.search(pattern, p) for p in problems), f"{pattern!r} not in {problems}"
