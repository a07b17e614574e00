"""Stand-in k3s/MetalLB artifacts: the release tree a mirror serves, the air-gap bundle, a server.

The k3s "binary" for every architecture is the stand-in k3s (a Python zipapp), the airgap images
tarball is a small placeholder, the sha256sum-<arch>.txt files list the right hashes, and the bundle's
MetalLB and Flux images archives are small valid OCI layouts (lab/releases/images.py); the Flux Operator's install.yaml is a
labelled stand-in (flux_operator_manifest).
"""
import hashlib
import json
import shutil
import tempfile
import threading
import zipapp
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from common import yamlio
from fleet import onsite
from fleet.flux import FLUX_OPERATOR_VERSION
from lab.releases import upstream
from lab.releases.images import PLATFORMS, flux_layout_archive, layout_archive

STANDINS = Path(__file__).parents[1] / "standins"
DEFAULT_TIMINGS = {"node_ready": 1.0, "heartbeat": 1.5, "node_lost": 8.0, "rollout": 1.5,
                   "endpoints": 0.5, "webhook_refusal": 3.0, "retry": 1.0}
# release arch -> (k3s binary asset, airgap images asset)
ARCH_ASSETS = {"amd64": ("k3s", "k3s-airgap-images-amd64.tar.zst"),
               "arm64": ("k3s-arm64", "k3s-airgap-images-arm64.tar.zst"),
               "arm": ("k3s-armhf", "k3s-airgap-images-arm.tar.zst")}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def k3s_binary(version: str, timings: dict | None = None, arch: str = "amd64") -> bytes:
    """The stand-in k3s for release arch `arch` as one executable file (#!/usr/bin/python3 zipapp)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "k3s")
        shutil.copytree(STANDINS / "k3s", source, ignore=shutil.ignore_patterns("__pycache__"))
        build = {"version": version, "arch": arch, "timings": {**DEFAULT_TIMINGS, **(timings or {})},
                 "flags": upstream.k3s_flags(version)}
        (source / "k3sstub" / "build.json").write_text(json.dumps(build))
        target = Path(tmp, "k3s.pyz")
        zipapp.create_archive(source, target, interpreter="/usr/bin/python3")
        return target.read_bytes()


def install_script() -> bytes:
    return (STANDINS / "install.sh").read_bytes()


def metallb_manifest(version: str) -> bytes:
    """The real MetalLB release manifest of `version` (from its Go module, verified)."""
    return upstream.metallb_manifest(version)


def flux_operator_manifest() -> bytes:
    """A STAND-IN for the Flux Operator release's install.yaml (the release's file is no module file): the real
    CRDs of its Go module, the flux-system namespace and the operator's Deployment running its image by tag."""
    crds = [doc for data in upstream.flux_operator_crds(FLUX_OPERATOR_VERSION)
            for doc in yamlio.load_all(data.decode(), f"flux-operator {FLUX_OPERATOR_VERSION} CRD") if doc]
    meta = {"name": "flux-operator", "namespace": "flux-system"}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
        "selector": {"matchLabels": {"app": "flux-operator"}}, "template": {
            "metadata": {"labels": {"app": "flux-operator"}}, "spec": {"containers": [
                {"name": "manager", "image": onsite.OPERATOR_IMAGE, "imagePullPolicy": "IfNotPresent"}]}}}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}}
    head = f"# lab stand-in for flux-operator {FLUX_OPERATOR_VERSION} install.yaml, not the release's file\n"
    return (head + yaml.safe_dump_all([namespace, *crds, deployment], sort_keys=True)).encode()


def write_flux_operator_release(directory: Path) -> None:
    """install.yaml and the release's checksum file listing it, as the release publishes them."""
    manifest = flux_operator_manifest()
    _write(directory / "install.yaml", manifest)
    sums = f"{sha256(manifest)}  install.yaml\n"
    _write(directory / f"flux-operator_{FLUX_OPERATOR_VERSION.lstrip('v')}_checksums.txt", sums.encode())


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def write_k3s_assets(directory: Path, version: str, timings: dict | None = None) -> None:
    """Every k3s release asset the kit uses, with correct sha256sum-<arch>.txt files; each arch's binary
    reports that arch as its nodes' kubernetes.io/arch (the kubelet's Go architecture)."""
    for arch, (binary_name, images_name) in ARCH_ASSETS.items():
        binary = k3s_binary(version, timings, arch)
        images = f"lab stand-in airgap images {version} {arch}\n".encode()
        _write(directory / binary_name, binary, 0o755)
        _write(directory / images_name, images)
        sums = f"{sha256(binary)}  {binary_name}\n{sha256(images)}  {images_name}\n"
        _write(directory / f"sha256sum-{arch}.txt", sums.encode())


def build_release_tree(root: Path, k3s_version: str, metallb_version: str,
                       timings: dict | None = None) -> dict:
    """GitHub-like release paths + raw paths under `root`; returns the unpublished sha256s:
    {"install.sh": ..., "metallb-native.yaml": ...}."""
    root = Path(root)
    write_k3s_assets(root / "k3s-io/k3s/releases/download" / k3s_version, k3s_version, timings)
    script, manifest = install_script(), metallb_manifest(metallb_version)
    _write(root / "k3s-io/k3s" / k3s_version / "install.sh", script, 0o755)
    _write(root / "metallb/metallb" / metallb_version / "config/manifests/metallb-native.yaml",
           manifest)
    write_flux_operator_release(root / "controlplaneio-fluxcd/flux-operator/releases/download" / FLUX_OPERATOR_VERSION)
    return {"install.sh": sha256(script), "metallb-native.yaml": sha256(manifest)}


def build_bundle(directory: Path, k3s_version: str, metallb_version: str,
                 timings: dict | None = None) -> Path:
    """The air-gap bundle layout (manifest.json, k3s/<v>/..., metallb/<v>/... with the images) in `directory`."""
    directory = Path(directory)
    k3s_dir = directory / "k3s" / k3s_version
    write_k3s_assets(k3s_dir, k3s_version, timings)
    _write(k3s_dir / "install.sh", install_script(), 0o755)
    _write(directory / "metallb" / metallb_version / "metallb-native.yaml",
           metallb_manifest(metallb_version))
    for arch in PLATFORMS:
        _write(directory / "metallb" / metallb_version / f"metallb-images-{arch}.tar",
               layout_archive(metallb_version, arch))
    flux = directory / "flux-operator" / FLUX_OPERATOR_VERSION
    write_flux_operator_release(flux)
    for arch in ("amd64", "arm64"):  # the platforms the Flux Operator publishes
        _write(flux / f"flux-images-{arch}.tar", flux_layout_archive(arch))
    files = {str(p.relative_to(directory)): sha256(p.read_bytes())
             for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    manifest = {"k3s": k3s_version, "metallb": metallb_version, "flux_operator": FLUX_OPERATOR_VERSION,
                "files": files}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def serve_directory(root: Path, host: str = "127.0.0.1"):
    """Serve `root` over HTTP in a thread; yields the base URL (http://host:port)."""
    server = ThreadingHTTPServer((host, 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
