"""Upstream files the lab needs, fetched by the kit itself, nothing read from beside the checkout: the real
MetalLB release manifest (go.universe.tf/metallb config/manifests/), kwok's stages, the Flux Operator's CRDs
(github.com/controlplaneio-fluxcd/flux-operator config/crd/bases/) and k3s's flag names (github.com/k3s-io/k3s
pkg/cli/cmds, extracted into the lab cache). Each comes in its Go module zip through the Go module proxy
(`go mod download`, which checks the zip against the checksum database) and the kit checks the zip's h1 hash
against its own pin below (Go's dirhash.Hash1: sha256 of the sorted "sha256  name" lines of the zip's files).
What cannot be had: UpstreamError naming it and how to provide it (exit 2 at the task)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

from common.files import atomic_write
from lab.programs.build import cache_root as programs_cache
from lab.releases import k3s_flags as flag_source

METALLB_MODULE = "go.universe.tf/metallb"  # MetalLB's module path (github.com/metallb/metallb is not served)
FLUX_OPERATOR_MODULE = "github.com/controlplaneio-fluxcd/flux-operator"
K3S_MODULE = "github.com/k3s-io/k3s"
KWOK_MODULE = "sigs.k8s.io/kwok"
# kwok's own stages (kustomize/stage/): a node turns Ready and keeps its lease, a bound pod runs and turns Ready,
# completes or goes when deleted; what `kwokctl` gives a cluster by default (pkg/kwokctl/runtime/cluster.go)
KWOK_STAGES = ("node/fast/node-initialize.yaml", "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
               "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml")
# The proxy serves no k3s v1.36/v1.37 tag (v1.37.2+k3s1 and v1.37.2: 403 "not available"; build metadata such as
# +k3s1 is no module version): the newest k3s it serves is this pseudo-version of master (2026-02-11). Its flags are
# the v1.31.4 list plus the five server keys added since. Checked 2026-12-07.
K3S_SOURCE_VERSION = "v1.35.1-0.20260211145931-c5b158798933"
K3S_SOURCE_ENV = "MLOPS_K3S_SOURCE"  # a k3s checkout (of the pinned tag) to read the flags from instead
# module@version -> h1 of its zip, as `go mod download -json` printed it on 2026-12-07 (sum.golang.org agrees).
PINNED = {
    f"{METALLB_MODULE}@v0.16.1": "h1:iVtjCslcUFMOEvuNeAyW2ygZxyW+6YjnNcEuCTOZezc=",
    f"{METALLB_MODULE}@v0.14.9": "h1:FYLII4Rpnju8pLY79H0BIoJVQI4mmEzeO9BJ0X44HX8=",
    f"{FLUX_OPERATOR_MODULE}@v0.58.1": "h1:ME/p3jGf5h9bNmQ5dhQBSjvj0G+7NTI1k3At+pCscis=",
    f"{KWOK_MODULE}@v0.8.0": "h1:OTIOTwgROqPMovcTwxICx2eYQ4AwLpSx5EpjbDKF4SQ=",
    f"{K3S_MODULE}@{K3S_SOURCE_VERSION}": "h1:UN67bsRiANznNwJAbhU6K3WxePAj/Dn+ttG15Z5GUZg=",
}
HOW = ("the lab fetches it through the Go module proxy: install Go 1.26 (https://go.dev/dl; `go` on PATH) with "
       "GOPROXY reaching proxy.golang.org (or a mirror of it), then run the task again")


class UpstreamError(RuntimeError):
    """An upstream file the lab needs is missing or does not match its pin: the message says how to provide it."""


def cache_root() -> Path:
    """The lab cache beside the built programs: outside the checkout, shared by every checkout on this machine."""
    return programs_cache().parent / "upstream"


def zip_h1(path: Path) -> str:
    """Go's dirhash.HashZip of a module zip."""
    with zipfile.ZipFile(path) as archive:
        lines = "".join(f"{hashlib.sha256(archive.read(name)).hexdigest()}  {name}\n"
                        for name in sorted(archive.namelist()) if not name.endswith("/"))
    return "h1:" + base64.b64encode(hashlib.sha256(lines.encode()).digest()).decode()


def module_zip(module: str, version: str, what: str) -> Path:
    """The verified zip of module@version from the Go module cache, downloaded first when missing."""
    key = f"{module}@{version}"
    if key not in PINNED:
        raise UpstreamError(f"{what}: the kit pins no {key} (lab/releases/upstream.py PINNED lists what it fetches)")
    try:
        return _verified_zip(key)
    except UpstreamError as err:
        raise UpstreamError(f"{what}: {err}") from None


@lru_cache(maxsize=None)
def _verified_zip(key: str) -> Path:
    """Once per process: a lab build reads the same modules many times."""
    go = shutil.which("go")
    if not go:
        raise UpstreamError(f"no `go` on PATH to fetch {key} (the lab fetches {', '.join(PINNED)}); {HOW}")
    with tempfile.TemporaryDirectory() as empty:  # outside any module: nothing to resolve but this one
        done = subprocess.run([go, "mod", "download", "-json", key], capture_output=True, text=True, cwd=empty,
                              env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"}, timeout=900)
    try:
        info = json.loads(done.stdout)
    except ValueError:
        info = {"Error": done.stderr.strip() or f"go exited {done.returncode}"}
    if info.get("Error") or not info.get("Zip"):
        raise UpstreamError(f"cannot fetch {key} ({info.get('Error', 'no zip')}); {HOW}")
    if zip_h1(Path(info["Zip"])) != PINNED[key]:
        raise UpstreamError(f"{info['Zip']} does not match the kit's pin {PINNED[key]} for {key}: remove it "
                            "(go clean -modcache) and run the task again")
    return Path(info["Zip"])


def module_files(module: str, version: str, folder: str, what: str) -> dict[str, bytes]:
    """name -> bytes of every file directly in `folder` of the verified module zip."""
    prefix = f"{module}@{version}/{folder.strip('/')}/"
    with zipfile.ZipFile(module_zip(module, version, what)) as archive:
        return {name[len(prefix):]: archive.read(name) for name in sorted(archive.namelist())
                if name.startswith(prefix) and "/" not in name[len(prefix):] and not name.endswith("/")}


def metallb_manifest(version: str) -> bytes:
    """config/manifests/metallb-native.yaml of MetalLB `version` (its release manifest)."""
    what = f"the MetalLB {version} release manifest"
    files = module_files(METALLB_MODULE, version, "config/manifests", what)
    if "metallb-native.yaml" not in files:
        raise UpstreamError(f"{what}: no config/manifests/metallb-native.yaml in {METALLB_MODULE}@{version}")
    return files["metallb-native.yaml"]


def flux_operator_crds(version: str) -> list[bytes]:
    """The Flux Operator's CRDs at `version` (config/crd/bases/*.yaml), in name order."""
    files = module_files(FLUX_OPERATOR_MODULE, version, "config/crd/bases", f"the Flux Operator {version} CRDs")
    return [data for name, data in files.items() if name.endswith(".yaml")]


def kwok_stages(version: str) -> list[bytes]:
    """kwok `version`'s stages of KWOK_STAGES, in that order."""
    what = f"the kwok {version} stages"
    stages = []
    for path in KWOK_STAGES:
        folder, name = path.rsplit("/", 1)
        files = module_files(KWOK_MODULE, version, f"kustomize/stage/{folder}", what)
        if name not in files:
            raise UpstreamError(f"{what}: no kustomize/stage/{path} in {KWOK_MODULE}@{version}")
        stages.append(files[name])
    return stages


def k3s_flags(version: str) -> dict:
    """{"server": [...], "agent": [...], "source": ...}: config.yaml keys per command as k3s's source defines them:
    a k3s checkout's when $MLOPS_K3S_SOURCE names one (say, of the pinned tag), else the newest k3s the proxy serves
    (its extract kept in the lab cache); `source` says which."""
    if os.environ.get(K3S_SOURCE_ENV):
        folder = Path(os.environ[K3S_SOURCE_ENV]) / "pkg" / "cli" / "cmds"
        sources = {p.name: p.read_text() for p in sorted(folder.glob("*.go"))}
        return {**_extract(sources, f"{K3S_SOURCE_ENV}: {folder}"), "source": f"{folder} (${K3S_SOURCE_ENV})"}
    cached = cache_root() / f"k3s-flags-{K3S_SOURCE_VERSION}.json"
    try:
        flags = json.loads(cached.read_text())
    except (OSError, ValueError):
        what = f"the k3s flag names for {version}"
        sources = {name: data.decode() for name, data in
                   module_files(K3S_MODULE, K3S_SOURCE_VERSION, "pkg/cli/cmds", what).items() if name.endswith(".go")}
        flags = _extract(sources, f"{what}: {K3S_MODULE}@{K3S_SOURCE_VERSION} pkg/cli/cmds")
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, json.dumps(flags, indent=1) + "\n", 0o644)
    note = "" if version.startswith("v1.35.") else \
        f" (the proxy serves no k3s {version}: the newest k3s it serves; ${K3S_SOURCE_ENV} names a checkout of it)"
    return {**flags, "source": f"{K3S_MODULE}@{K3S_SOURCE_VERSION} pkg/cli/cmds{note}"}


def _extract(sources: dict[str, str], where: str) -> dict[str, list[str]]:
    if not sources:
        raise UpstreamError(f"{where}: no Go files (give a k3s checkout: git clone --branch <tag> "
                            "https://github.com/k3s-io/k3s)")
    try:
        return flag_source.extract(sources)
    except flag_source.FlagSourceError as err:
        raise UpstreamError(f"{where}: {err}") from None
