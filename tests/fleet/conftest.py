"""Fleet tests: a copy of the seeds with model files per test, and a real registry per module."""
import shutil
from pathlib import Path

import pytest
import yaml

from tests.fleet.registry import RealRegistry

SEEDS = Path(__file__).resolve().parents[2] / "fleet"


@pytest.fixture
def seeds(tmp_path):
    """A writable copy of fleet/'s seeds (yaml files only) and out/models with the versions they pin."""
    root = tmp_path / "fleet"
    for path in SEEDS.rglob("*.yaml"):
        if path.name != "rollout.yaml" or path.parent == SEEDS:
            (root / path.relative_to(SEEDS)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / path.relative_to(SEEDS))
    for version in ("6", "7"):
        folder = tmp_path / "models" / "defect-detector" / version
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(f"weights {version}".encode())
        (folder / "labels.txt").write_text("ok\ndefect\n")
    return root


def edit(path: Path, **changes) -> None:
    """Set top-level keys of a YAML file."""
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    real = RealRegistry(tmp_path_factory.mktemp("registry")).start()
    yield real
    real.close()
