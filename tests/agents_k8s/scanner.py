"""The scanner the kit's tests run: checkov, pinned, in a virtualenv of its own.

checkov pins its own dependencies (packaging<24, among others) that conflict with the kit's test tools,
so it lives apart from .venv, created once per machine under
${XDG_CACHE_HOME:-~/.cache}/mlops-edge-kit/tools/checkov-<version> (PyPI; checked 2026-12-07).
It runs offline: --skip-download (no platform mappings) and no update check.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

CHECKOV_VERSION = "3.3.30"  # https://pypi.org/project/checkov/3.3.30/ (checked 2026-12-07)


def tool_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mlops-edge-kit" / "tools" / f"checkov-{CHECKOV_VERSION}"


def ensure_checkov() -> Path:
    """The checkov executable, installed into its own virtualenv on first use (locked against parallel runs)."""
    root = tool_dir()
    root.parent.mkdir(parents=True, exist_ok=True)
    executable, stamp = root / "bin" / "checkov", root / ".installed"
    with open(root.parent / f".checkov-{CHECKOV_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
            subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", f"checkov=={CHECKOV_VERSION}"], check=True)
            stamp.touch()
    return executable


def scan(path: Path, framework: str) -> dict:
    """checkov's JSON report of one file or folder for one framework (kubernetes, dockerfile)."""
    flag = "-d" if path.is_dir() else "-f"
    env = dict(os.environ, CKV_SKIP_PACKAGE_UPDATE_CHECK="True", BC_SKIP_MAPPING="TRUE")
    done = subprocess.run([str(ensure_checkov()), flag, str(path), "--framework", framework, "--skip-download",
                           "--compact", "-o", "json"], capture_output=True, text=True, env=env)
    if done.returncode not in (0, 1):  # 1: findings; anything else: checkov itself failed
        raise RuntimeError(f"checkov exited {done.returncode}: {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    (only,) = [r for r in reports if r.get("check_type") == framework]
    return only
