"""edge.bundle: on a connected machine, download a site's release artifacts into an air-gap bundle, each verified
(k3s assets against the release's sha256sum file; install.sh and the MetalLB manifest against given sha256 pins;
the MetalLB images blob by blob against their registry digests). With a Flux Operator digest it also carries the
pinned Flux Operator release for fleet delivery: its install.yaml, verified against the release's checksum file,
and the images the operator deploys, pulled by digest (the controllers' from fleet.onsite.FLUX_IMAGES)."""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common import k3s, oci
from edge_hosts.artifacts.downloads import FLUX_OPERATOR_SUMS, flux_operator_release, release_urls
from edge_hosts.access.ssh import sha256_file
from edge_hosts.access.state import write_private
from fleet import onsite
from fleet.flux import FLUX_OPERATOR_VERSION

TIMEOUT_S = 60
DEFAULT_REGISTRY = "https://quay.io"
FLUX_REGISTRY = "https://ghcr.io"  # where the Flux Operator and the Flux controllers are published


@dataclass(frozen=True)
class FluxPins:
    """The Flux Operator release in a bundle: the operator image's digest (reviewed, like the sha256 pins), the
    registry the images come from, and the controllers' digests (the operator's own, FLUX_IMAGES)."""
    operator_digest: str
    registry: str = FLUX_REGISTRY
    images: dict[str, str] = field(default_factory=lambda: dict(onsite.FLUX_IMAGES))


class BundleError(Exception):
    """A download failed or did not match its checksum; nothing was written."""


def _download(url: str, dest: Path) -> str:
    """Stream url into dest; return its sha256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as err:
        raise BundleError(f"download of {url} failed: {err}") from None
    return digest.hexdigest()


def parse_sums(text: str) -> dict[str, str]:
    """'<sha256>  <file>' lines of a k3s release sha256sum file."""
    sums = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def _fetch_verified(url: str, dest: Path, expected: str | None, what: str) -> str:
    if not expected:
        raise BundleError(f"no published sha256 for {what} ({url})")
    actual = _download(url, dest)
    if actual != expected:
        raise BundleError(f"checksum mismatch for {what} ({url}): got {actual}, expected {expected}; refusing it")
    return actual


def build_bundle(version: str, arch: str, out: Path, metallb_version: str, install_sha256: str,
                 metallb_sha256: str, mirror: str = "https://github.com",
                 raw: str = "https://raw.githubusercontent.com", registry: str = DEFAULT_REGISTRY,
                 flux: FluxPins | None = None) -> dict:
    """Download, verify all, then move into out/ and update manifest.json; return the manifest."""
    urls = release_urls(mirror.rstrip("/"), raw.rstrip("/"), version, metallb_version)
    sums_name = k3s.checksum_asset(arch)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".staging-") as tmp:
        staging = Path(tmp)
        sums_sha = _download(f"{urls['release']}/{sums_name}", staging / sums_name)
        sums = parse_sums((staging / sums_name).read_text())
        files = {f"k3s/{version}/{sums_name}": (staging / sums_name, sums_sha)}
        for asset in (k3s.BINARY_ASSET[arch], k3s.images_asset(arch)):
            sha = _fetch_verified(f"{urls['release']}/{asset}", staging / asset, sums.get(asset), asset)
            files[f"k3s/{version}/{asset}"] = (staging / asset, sha)
        files[f"k3s/{version}/install.sh"] = (staging / "install.sh", _fetch_verified(
            urls["install"], staging / "install.sh", install_sha256, "install.sh"))
        files[f"metallb/{metallb_version}/metallb-native.yaml"] = (staging / "metallb.yaml", _fetch_verified(
            urls["metallb"], staging / "metallb.yaml", metallb_sha256, "metallb-native.yaml"))
        images = k3s.metallb_images_asset(arch)
        files[f"metallb/{metallb_version}/{images}"] = (staging / images, _pull_images(
            registry, [f"{image}:{metallb_version}" for image in k3s.METALLB_IMAGES], arch, staging / images,
            staging / "oci"))
        if flux:
            files.update(_flux_files(mirror.rstrip("/"), arch, flux, staging))
        for rel, (path, _) in files.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, out / rel)
    return _write_manifest(out, version, metallb_version, {rel: sha for rel, (_, sha) in files.items()},
                           FLUX_OPERATOR_VERSION if flux else None)


def _flux_files(mirror: str, arch: str, flux: FluxPins, staging: Path) -> dict[str, tuple[Path, str]]:
    """install.yaml checked against the release's checksum file (published: goreleaser's checksum.extra_files),
    and the operator's and controllers' images for arch by digest, as one archive."""
    release, folder = flux_operator_release(mirror), f"flux-operator/{FLUX_OPERATOR_VERSION}"
    sums_sha = _download(f"{release}/{FLUX_OPERATOR_SUMS}", staging / FLUX_OPERATOR_SUMS)
    sums = parse_sums((staging / FLUX_OPERATOR_SUMS).read_text())
    install = staging / "flux-operator.yaml"
    images = k3s.flux_images_asset(arch)
    references = onsite.image_references(flux.operator_digest, flux.images)
    return {f"{folder}/{FLUX_OPERATOR_SUMS}": (staging / FLUX_OPERATOR_SUMS, sums_sha),
            f"{folder}/install.yaml": (install, _fetch_verified(f"{release}/install.yaml", install,
                                                                 sums.get("install.yaml"), "install.yaml")),
            f"{folder}/{images}": (staging / images, _pull_images(flux.registry, references, arch, staging / images,
                                                                  staging / "flux-oci"))}


def _pull_images(registry: str, references: list[str], arch: str, dest: Path, work: Path) -> str:
    """The images for arch as one OCI layout archive; return its sha256."""
    platform = oci.Platform(*k3s.IMAGE_PLATFORM[arch])
    try:
        oci.pull_archive(registry, references, platform, dest, work)
    except oci.RegistryError as err:
        raise BundleError(str(err)) from None
    return sha256_file(dest)


def _write_manifest(out: Path, version: str, metallb_version: str, files: dict[str, str],
                    flux_operator: str | None) -> dict:
    """Merge with an existing manifest of the same versions (bundles for several archs share one); the Flux
    Operator release stays recorded while a build for another arch leaves it out."""
    path = out / "manifest.json"
    manifest = {"k3s": version, "metallb": metallb_version, "files": {}}
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("k3s") == version and old.get("metallb") == metallb_version:
            manifest["files"].update(old.get("files", {}))
            flux_operator = flux_operator or old.get("flux_operator")
    if flux_operator:
        manifest["flux_operator"] = flux_operator
    manifest["files"].update(files)
    write_private(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    path.chmod(0o644)
    return manifest
