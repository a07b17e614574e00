"""Build the lab's real upstream programs (kube-apiserver, kube-controller-manager, kubectl, etcd) from the Go tools
module beside this file, once per machine, into a cache outside the checkout keyed by version:
${XDG_CACHE_HOME:-~/.cache}/mlops-edge-kit/programs/<name>-<version>/<name>. A stamp beside each binary (version,
go.sum hash, build flags) makes later runs reuse it without calling `go` at all.

The module needs Go 1.26 (its go.mod says `go 1.26.0`, as k8s.io/kubernetes v1.37.2's does), so no GOTOOLCHAIN is
set. Versions come from go.mod itself, so bumping a pin there is the only edit a new version needs.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent
BUILD_DATE = "2026-01-01T00:00:00Z"  # fixed, so a rebuild of one pin gives the same `version` output


@dataclass(frozen=True)
class Program:
    """One binary of the tools module: its package, the module that versions it, how it prints its version."""

    name: str
    package: str
    module: str
    version_args: tuple[str, ...] = ("--version",)

    def shown_version(self, version: str) -> str:
        """The text its version output must contain: k8s prints `v1.37.2`, etcd `Version: 3.7.0`."""
        return version if self.module == "k8s.io/kubernetes" else f"Version: {version.lstrip('v')}"

    def ldflags(self, version: str) -> str:
        """`-s -w` plus, for Kubernetes programs, the version variables a `go build` otherwise leaves at
        v0.0.0-master (k8s.io/component-base/version/base.go; etcd's version is a constant in its api module)."""
        if self.module != "k8s.io/kubernetes":
            return "-s -w"
        major, minor = version.lstrip("v").split(".")[:2]
        var = "k8s.io/component-base/version."
        return " ".join(["-s -w", f"-X {var}gitVersion={version}", f"-X {var}gitMajor={major}",
                         f"-X {var}gitMinor={minor}", f"-X {var}gitTreeState=clean",
                         f"-X {var}buildDate={BUILD_DATE}"])


PROGRAMS = (
    Program("etcd", "go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/server/v3"),
    Program("kubectl", "k8s.io/kubernetes/cmd/kubectl", "k8s.io/kubernetes", ("version", "--client")),
    Program("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes"),
    Program("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager", "k8s.io/kubernetes"),
)
COLD_MINUTES = {"kube-apiserver": 5, "kube-controller-manager": 2}  # measured with an empty Go build cache


class BuildError(RuntimeError):
    """A program could not be built or does not report its pinned version; the message says what to do."""


def cache_root() -> Path:
    """Where built programs live: outside the checkout, shared by every checkout on this machine."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mlops-edge-kit" / "programs"


def pinned_version(module: str, module_dir: Path = MODULE_DIR) -> str:
    """The version go.mod requires of `module` (read as text, so a reuse needs no `go`)."""
    text = (module_dir / "go.mod").read_text()
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
    if not found:
        raise BuildError(f"{module_dir / 'go.mod'}: no require of {module}")
    return found.group(1)


def _stamp(program: Program, version: str, module_dir: Path) -> dict:
    gosum = hashlib.sha256((module_dir / "go.sum").read_bytes()).hexdigest()
    return {"version": version, "go.sum": gosum, "ldflags": program.ldflags(version)}


def binary_path(program: Program, module_dir: Path = MODULE_DIR) -> Path:
    """The cached binary of `program` at the version go.mod pins."""
    version = pinned_version(program.module, module_dir)
    return cache_root() / f"{program.name}-{version}" / program.name


def ensure_programs(module_dir: Path = MODULE_DIR, log=None) -> dict[str, Path]:
    """Every program's binary, built first where the cache lacks it or its stamp differs; name -> path."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    return {p.name: ensure_program(p, module_dir, log) for p in PROGRAMS}


def ensure_program(program: Program, module_dir: Path, log) -> Path:
    """One program's cached binary, built (under a lock, so parallel runs build it once) when missing or stale."""
    version = pinned_version(program.module, module_dir)
    target = binary_path(program, module_dir)
    stamp_file = target.with_name(".stamp.json")
    want = _stamp(program, version, module_dir)
    if _fresh(target, stamp_file, want):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _fresh(target, stamp_file, want):
            _build(program, version, module_dir, target, log)
            _verify(program, version, target)
            stamp_file.write_text(json.dumps(want, indent=1) + "\n")
    return target


def _fresh(target: Path, stamp_file: Path, want: dict) -> bool:
    try:
        return target.is_file() and json.loads(stamp_file.read_text()) == want
    except (OSError, ValueError):
        return False


def _build(program: Program, version: str, module_dir: Path, target: Path, log) -> None:
    go = shutil.which("go")
    if not go:
        raise BuildError("the lab builds its programs with Go 1.26 or newer, and `go` is not on PATH: "
                         "install Go (https://go.dev/doc/install or Debian's golang-go if it is 1.26+) and re-run")
    minutes = COLD_MINUTES.get(program.name, 1)
    log(f"lab programs: building {program.name} {version} into {target.parent} (once per machine; a cold build "
        f"takes about {minutes} min on 2 cores, a warm Go build cache only seconds)")
    partial = target.with_name(f".{program.name}.partial")
    # -mod=readonly: the build never rewrites the committed go.mod/go.sum
    cmd = ["nice", "-n", "10", go, "build", "-mod=readonly", "-p", "2", "-trimpath",
           f"-ldflags={program.ldflags(version)}", "-o", str(partial), program.package]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=module_dir, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BuildError(f"go build of {program.name} {version} failed (in {module_dir}):\n"
                         f"{done.stderr.strip()}\n{_hint(done.stderr)}")
    os.replace(partial, target)
    log(f"lab programs: built {program.name} in {time.monotonic() - started:.0f} s")


def _hint(stderr: str) -> str:
    """What to do about the failures seen on real machines."""
    if any(sign in stderr for sign in ("GOPROXY=off", "reading http", "dial tcp", "lookup ")):
        return ("the Go module proxy could not serve a module: check GOPROXY (`go env GOPROXY`) and the network, "
                "then re-run `./kit lab.programs`")
    if "no space left on device" in stderr:
        return "the disk is full: the Go build cache (`go env GOCACHE`) needs some 3 GB; free space and re-run"
    if "missing go.sum entry" in stderr:
        return "lab/programs/go.sum lacks an entry: run `go mod tidy` in lab/programs and commit go.mod and go.sum"
    return "fix the cause above, then re-run `./kit lab.programs`"


def _verify(program: Program, version: str, target: Path) -> None:
    out = subprocess.run([str(target), *program.version_args], capture_output=True, text=True, timeout=60)
    shown = program.shown_version(version)
    if out.returncode != 0 or shown not in out.stdout:
        target.unlink(missing_ok=True)
        raise BuildError(f"{target} {' '.join(program.version_args)} printed {out.stdout.strip()!r}"
                         f"{out.stderr.strip()!r}, not {shown!r}: the build is not the pinned {version}")
