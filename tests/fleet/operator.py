"""The Flux Operator's own ResourceSet rendering, for tests: tests/fleet/rsetcheck (the kit's Go program) built
inside a copy of the operator's module at the pinned version (Go's internal-package rule allows no other way
to call internal/builder and internal/inputs), once per machine, then run on a ResourceSet and the exported
inputs of its providers."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from fleet import flux

MODULE = "github.com/controlplaneio-fluxcd/flux-operator"
SOURCE = Path(__file__).with_name("rsetcheck") / "main.go"


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops-edge-kit" / "programs"


def binary() -> Path:
    """The built rsetcheck (built on first use; go fetches the module through the Go proxy when not cached)."""
    stamp = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    target = _cache() / f"rsetcheck-{flux.FLUX_OPERATOR_VERSION}-{stamp}" / "rsetcheck"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            _build(target)
    return target


def module_dir() -> Path:
    """The operator's module source at the pinned version (Go's module cache; go fetches it when missing)."""
    found = subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{flux.FLUX_OPERATOR_VERSION}"],
                           capture_output=True, text=True, check=True)
    return Path(json.loads(found.stdout)["Dir"])


def _build(target: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        module = Path(work) / "operator"
        shutil.copytree(module_dir(), module)
        for path in [module, *module.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        (module / "cmd" / "rsetcheck").mkdir(parents=True)
        shutil.copy(SOURCE, module / "cmd" / "rsetcheck" / "main.go")
        subprocess.run(["nice", "go", "build", "-mod=readonly", "-trimpath", "-o", f"{target}.tmp", "./cmd/rsetcheck"],
                       cwd=module, check=True, capture_output=True)
    Path(f"{target}.tmp").rename(target)


def render(resource_set: dict, exported: dict[str, list[dict]]) -> list[dict]:
    """What the operator applies for resource_set when each named provider exported these inputs."""
    providers = [{"apiVersion": "fluxcd.controlplane.io/v1", "kind": "ResourceSetInputProvider",
                  "metadata": {"name": name}, "status": {"exportedInputs": inputs}}
                 for name, inputs in exported.items()]
    done = subprocess.run([str(binary())], input=json.dumps({"resourceSet": resource_set, "providers": providers}),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
