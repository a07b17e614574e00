"""Build the lab's real upstream programs from the Go tools modules beside this file (kube-apiserver,
kube-controller-manager, kube-scheduler, kubectl and etcd from go.mod here; the Flux Operator and the Flux
controllers from their own modules under flux/, MetalLB's controller from metallb/, kwok from kwok/), once per machine, into a cache outside the checkout
keyed by version: ${XDG_CACHE_HOME:-~/.cache}/mlops-edge-kit/programs/<name>-<version>/<name>. A stamp beside each
binary (version, go.sum hash, build flags) makes later runs reuse it without calling `go` at all.

Every module says `go 1.26.0` (as k8s.io/kubernetes v1.37.2 and the Flux modules do), so Go 1.26 builds them and no
GOTOOLCHAIN is set. Versions come from the go.mod files, so bumping a pin there is the only edit a new version needs.
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
    """One binary of a tools module: its package, the module that versions it, how its version is checked.

    `folder` is its tools module below lab/programs ("" is the Kubernetes one); `version_args` empty means the
    program has no version flag (the Flux controllers), so the version Go recorded in the binary is checked."""

    name: str
    package: str
    module: str
    version_args: tuple[str, ...] = ("--version",)
    folder: str = ""
    version_var: str = ""  # a main package variable the version goes into
    web_stub: bool = False  # built from a copy of its module with a stub web/dist (the zip lacks the built UI)
    shown: str = ""  # what its version output contains ({version}), where none of the defaults below fits

    def shown_version(self, version: str) -> str:
        """The text its version output must contain: k8s prints `v1.37.2`, etcd `Version: 3.7.0`, Go's build
        information `<module>\tv1.9.1`."""
        if self.shown:
            return self.shown.format(version=version)
        if not self.version_args:
            return f"{self.module}\t{version}"
        return version if self.module == "k8s.io/kubernetes" else f"Version: {version.lstrip('v')}"

    def ldflags(self, version: str) -> str:
        """`-s -w` plus, for Kubernetes programs, the version variables a `go build` otherwise leaves at
        v0.0.0-master (k8s.io/component-base/version/base.go; etcd's version is a constant in its api module)."""
        if self.version_var:
            return f"-s -w -X {self.version_var}={version}"
        if self.module != "k8s.io/kubernetes":
            return "-s -w"
        major, minor = version.lstrip("v").split(".")[:2]
        var = "k8s.io/component-base/version."
        return " ".join(["-s -w", f"-X {var}gitVersion={version}", f"-X {var}gitMajor={major}",
                         f"-X {var}gitMinor={minor}", f"-X {var}gitTreeState=clean",
                         f"-X {var}buildDate={BUILD_DATE}"])


KUBERNETES = (
    Program("etcd", "go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/server/v3"),
    Program("kubectl", "k8s.io/kubernetes/cmd/kubectl", "k8s.io/kubernetes", ("version", "--client")),
    Program("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes"),
    Program("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager", "k8s.io/kubernetes"),
)
# Flux Operator v0.58.1 and the controllers of the Flux v2.9.4 it deploys (fleet/onsite.py FLUX_IMAGES; the
# project's CRDs pin source-controller v1.9.1), each in its own tools module so upstream's pins are kept
FLUX = (
    Program("flux-operator", "github.com/controlplaneio-fluxcd/flux-operator/cmd/operator",
            "github.com/controlplaneio-fluxcd/flux-operator", (), "flux/flux-operator", "main.VERSION", True),
    *(Program(name, f"github.com/fluxcd/{name}", f"github.com/fluxcd/{name}", (), f"flux/{name}")
      for name in ("source-controller", "kustomize-controller", "notification-controller")),
)
# MetalLB v0.16.1's controller (the edge pin, edge_hosts/tasks/inputs.py); its version is a constant of
# go.universe.tf/metallb/internal/version, printed only in its start-up log: no version flag
METALLB = (Program("metallb-controller", "go.universe.tf/metallb/controller", "go.universe.tf/metallb", (), "metallb"),)
# What kubelets do for the control plane (nodes Ready with leases, pods bound and Running): the scheduler at the
# Kubernetes pin, and kwok v0.8.0 (sigs.k8s.io/kwok, its own tools module kwok/) with its upstream stages
NODES = (Program("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler", "k8s.io/kubernetes"),
         Program("kwok", "sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok", folder="kwok",
                 shown="kwok version {version}"))
PROGRAMS = KUBERNETES + FLUX + METALLB + NODES
COLD_MINUTES = {"kube-apiserver": 5, "kube-controller-manager": 2, "kube-scheduler": 2, "kwok": 4, "flux-operator": 3,
                "source-controller": 5, "kustomize-controller": 2, "notification-controller": 2,
                "metallb-controller": 9}  # measured, 2 cores (metallb: 516 s, kwok: 241 s, empty GOCACHE, 2026-12-07)


class BuildError(RuntimeError):
    """A program could not be built or does not report its pinned version; the message says what to do."""


def cache_root() -> Path:
    """Where built programs live: outside the checkout, shared by every checkout on this machine."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mlops-edge-kit" / "programs"


def pinned_version(program: Program, root: Path = MODULE_DIR) -> str:
    """The version its tools module's go.mod requires of the program's module (read as text: a reuse needs no go)."""
    gomod = root / program.folder / "go.mod"
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(program.module)}\s+(v\S+)", gomod.read_text(), re.M)
    if not found:
        raise BuildError(f"{gomod}: no require of {program.module}")
    return found.group(1)


def _stamp(program: Program, version: str, root: Path) -> dict:
    gosum = hashlib.sha256((root / program.folder / "go.sum").read_bytes()).hexdigest()
    return {"version": version, "go.sum": gosum, "ldflags": program.ldflags(version)}


def binary_path(program: Program, root: Path = MODULE_DIR) -> Path:
    """The cached binary of `program` at the version its go.mod pins."""
    return cache_root() / f"{program.name}-{pinned_version(program, root)}" / program.name


def ensure_programs(root: Path = MODULE_DIR, log=None, programs: tuple[Program, ...] = PROGRAMS) -> dict[str, Path]:
    """Every program's binary, built first where the cache lacks it or its stamp differs; name -> path."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    return {p.name: ensure_program(p, root, log) for p in programs}


def ensure_program(program: Program, root: Path, log) -> Path:
    """One program's cached binary, built (under a lock, so parallel runs build it once) when missing or stale."""
    version = pinned_version(program, root)
    target = binary_path(program, root)
    stamp_file = target.with_name(".stamp.json")
    want = _stamp(program, version, root)
    if _fresh(target, stamp_file, want):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _fresh(target, stamp_file, want):
            _build(program, version, root, target, log)
            _verify(program, version, target)
            stamp_file.write_text(json.dumps(want, indent=1) + "\n")
    return target


def _fresh(target: Path, stamp_file: Path, want: dict) -> bool:
    try:
        return target.is_file() and json.loads(stamp_file.read_text()) == want
    except (OSError, ValueError):
        return False


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise BuildError("the lab builds its programs with Go 1.26 or newer, and `go` is not on PATH: "
                         "install Go (https://go.dev/doc/install or Debian's golang-go if it is 1.26+) and re-run")
    return go


def _run_go(program: Program, version: str, args: list[str], cwd: Path) -> str:
    done = subprocess.run(["nice", "-n", "10", _go(), *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"go {args[0]} of {program.name} {version} failed (in {cwd}):\n"
                         f"{done.stderr.strip()}\n{_hint(done.stderr)}")
    return done.stdout


def _build(program: Program, version: str, root: Path, target: Path, log) -> None:
    minutes = COLD_MINUTES.get(program.name, 1)
    log(f"lab programs: building {program.name} {version} into {target.parent} (once per machine; a cold build "
        f"takes about {minutes} min on 2 cores, a warm Go build cache only seconds)")
    partial = target.with_name(f".{program.name}.partial")
    started = time.monotonic()
    where = _web_stub_module(program, version, root, target) if program.web_stub else root / program.folder
    # -mod=readonly: the build never rewrites the committed go.mod/go.sum
    try:
        _run_go(program, version, ["build", "-mod=readonly", "-p", "2", "-trimpath",
                                   f"-ldflags={program.ldflags(version)}", "-o", str(partial), program.package], where)
    except BuildError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    log(f"lab programs: built {program.name} in {time.monotonic() - started:.0f} s")


def _web_stub_module(program: Program, version: str, root: Path, target: Path) -> Path:
    """A copy of the tools module whose replace points at a copy of the program's module with a stub
    web/dist/index.html: the module zip lacks web/dist, which upstream's Makefile builds with npm before `go build`
    (its web/embed.go embeds dist/*), and go refuses overlays of files in the module cache."""
    folder, stage = root / program.folder, target.with_name("module")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    for name in ("go.mod", "go.sum"):
        shutil.copy(folder / name, stage / name)
    found = json.loads(_run_go(program, version, ["mod", "download", "-json", f"{program.module}@{version}"], folder))
    shutil.copytree(found["Dir"], stage / "src", copy_function=shutil.copyfile)
    for path in (stage / "src").rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
    (stage / "src").chmod(0o755)
    (stage / "src" / "web" / "dist").mkdir(exist_ok=True)
    (stage / "src" / "web" / "dist" / "index.html").write_text("<!doctype html><title>flux-operator</title>\n")
    _run_go(program, version, ["mod", "edit", f"-replace={program.module}=./src"], stage)
    return stage


def _hint(stderr: str) -> str:
    """What to do about the failures seen on real machines."""
    if any(sign in stderr for sign in ("GOPROXY=off", "reading http", "dial tcp", "lookup ")):
        return ("the Go module proxy could not serve a module: check GOPROXY (`go env GOPROXY`) and the network, "
                "then re-run `./kit lab.programs`")
    if "no space left on device" in stderr:
        return "the disk is full: the Go build cache (`go env GOCACHE`) needs some 3 GB; free space and re-run"
    if "missing go.sum entry" in stderr:
        return ("a go.sum under lab/programs lacks an entry: run `go mod tidy` in that module and commit its go.mod "
                "and go.sum")
    return "fix the cause above, then re-run `./kit lab.programs`"


def _verify(program: Program, version: str, target: Path) -> None:
    """Run its version flag, or (no such flag) read the module versions Go recorded in it (`go version -m`)."""
    argv = [str(target), *program.version_args] if program.version_args else [_go(), "version", "-m", str(target)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    shown = program.shown_version(version)
    if out.returncode != 0 or shown not in out.stdout:
        target.unlink(missing_ok=True)
        raise BuildError(f"{' '.join(argv)} printed {out.stdout.strip()[-400:]!r}{out.stderr.strip()[-400:]!r}, "
                         f"not {shown!r}: the build is not the pinned {version}")
