"""An oracle for the kit's kubeconfig conversion that shares none of its code: kubelogin's own converter.

`kubelogin convert-kubeconfig` at the version the agent image pins (agents/image/agent.lock KUBELOGIN_VERSION), built
once per machine from the Go module proxy (`go install github.com/Azure/kubelogin@v<version>`) into
${XDG_CACHE_HOME:-~/.cache}/mlops-edge-kit/kubelogin-<version>/."""
from __future__ import annotations

import fcntl
import os
import re
import subprocess
from pathlib import Path

import yaml

from infra.stack.stack_config import ROOT

LOCK = ROOT / "agents" / "image" / "agent.lock"


def pinned_version() -> str:
    return re.search(r"^KUBELOGIN_VERSION=(\S+)$", LOCK.read_text(), re.M)[1]


def binary() -> Path:
    """kubelogin at the pinned version, built when this machine has none."""
    version = pinned_version()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops-edge-kit"
    target = cache / f"kubelogin-{version}" / "kubelogin"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            subprocess.run(["nice", "go", "install", f"github.com/Azure/kubelogin@v{version}"], check=True,
                           capture_output=True, env={**os.environ, "GOBIN": str(target.parent)})
    return target


def convert(kubeconfig: str, method: str, client_id: str | None, workdir: Path) -> dict:
    """The kubeconfig as `kubelogin convert-kubeconfig --login <method> [--client-id <id>]` rewrites it."""
    path = workdir / f"kubeconfig-{method}-{client_id or 'none'}"
    path.write_text(kubeconfig)
    argv = [str(binary()), "convert-kubeconfig", "--kubeconfig", str(path), "--login", method]
    subprocess.run(argv + (["--client-id", client_id] if client_id else []), check=True, capture_output=True,
                   env={"PATH": os.environ.get("PATH", ""), "HOME": str(workdir)})
    return yaml.safe_load(path.read_text())
