"""Release artifacts a host needs (k3s binary, install script, airgap images, MetalLB manifest, and from a bundle
the MetalLB images) and getting them there: uploaded from a verified air-gap bundle, or downloaded and verified
by an online host itself (which then pulls the MetalLB images from their registry like any image)."""
from __future__ import annotations

import json
import shlex
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from common import k3s
from edge_hosts.artifacts import proxy
from edge_hosts.inventory.model import Host, Inventory
from edge_hosts.facts.probe import Facts
from edge_hosts.access.ssh import HostSession, sha256_file
from fleet.flux import FLUX_OPERATOR_VERSION

METALLB_REMOTE = "/var/lib/rancher/k3s/mlops-edge-kit/metallb-native.yaml"


class ArtifactError(Exception):
    """A missing or corrupted artifact (bundle file or download)."""


@dataclass(frozen=True)
class Artifact:
    key: str          # what it is: bin | install | images | metallb_images | metallb
    remote: str       # path on the host
    mode: str
    relpath: str      # path inside the bundle (also the release layout)
    url: str          # where an online host downloads it
    sha256: str | None            # known up front (bundle manifest or inventory pin)
    checksum_url: str | None = None  # else: the release's sha256sum file that lists it


def release_urls(mirror: str, raw: str, version: str, metallb_version: str) -> dict[str, str]:
    """Base URLs of the k3s release, its install script and the MetalLB manifest."""
    return {"release": f"{mirror}/k3s-io/k3s/releases/download/{version}",
            "install": f"{raw}/k3s-io/k3s/{version}/install.sh",
            "metallb": f"{raw}/metallb/metallb/{metallb_version}/config/manifests/metallb-native.yaml"}


# The Flux Operator release's assets (controlplaneio-fluxcd/flux-operator v0.58.1, .github/workflows/release.yaml
# and .goreleaser.yml): install.yaml, listed with its sha256 in goreleaser's checksum file.
FLUX_OPERATOR_SUMS = f"flux-operator_{FLUX_OPERATOR_VERSION.removeprefix('v')}_checksums.txt"


def flux_operator_release(mirror: str) -> str:
    return f"{mirror}/controlplaneio-fluxcd/flux-operator/releases/download/{FLUX_OPERATOR_VERSION}"


class ArtifactSource:
    """Where a site's artifacts come from, with their expected sha256 values."""

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self.bundle = inventory.bundle
        self.manifest = self._manifest() if self.bundle else {}
        self._verified: dict[str, str] = {}
        self._lock = threading.Lock()

    def _manifest(self) -> dict:
        path = self.bundle / "manifest.json"
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ArtifactError(f"bundle {self.bundle}: cannot read manifest.json ({err}); build it with edge.bundle")
        wanted = {"k3s": self.inventory.k3s.version, "metallb": self.inventory.metallb.version}
        if self.inventory.fleet:
            wanted["flux_operator"] = FLUX_OPERATOR_VERSION  # a bundle built with --flux-operator-digest
        for key, version in wanted.items():
            if manifest.get(key) != version:
                raise ArtifactError(f"bundle {self.bundle} holds {key} {manifest.get(key)}, the site pins {version}")
        return manifest

    def _artifact(self, key: str, remote: str, mode: str, relpath: str, url: str, pin: str | None,
                  sums: str | None = None) -> Artifact:
        if self.bundle:
            sha = self.manifest.get("files", {}).get(relpath)
            if sha is None:
                raise ArtifactError(f"bundle {self.bundle} has no {relpath} (built for another arch?)")
            return Artifact(key, remote, mode, relpath, url, sha)
        return Artifact(key, remote, mode, relpath, url, pin, sums)

    def host_artifacts(self, host: Host) -> list[Artifact]:
        inv = self.inventory
        version = inv.k3s.version
        urls = release_urls(inv.downloads.mirror, inv.downloads.raw, version, inv.metallb.version)
        sums = f"{urls['release']}/{k3s.checksum_asset(host.arch)}"
        binary, images = k3s.BINARY_ASSET[host.arch], k3s.images_asset(host.arch)
        return [
            self._artifact("bin", k3s.BIN, "0755", f"k3s/{version}/{binary}", f"{urls['release']}/{binary}",
                           None, sums),
            self._artifact("install", k3s.INSTALL_SCRIPT, "0755", f"k3s/{version}/install.sh", urls["install"],
                           inv.k3s.install_script_sha256),
            self._artifact("images", k3s.images_path(host.arch), "0644", f"k3s/{version}/{images}",
                           f"{urls['release']}/{images}", None, sums),
        ] + ([self._metallb_images(host)] if self.bundle else []) + self._flux_images(host)

    def _flux_images(self, host: Host) -> list[Artifact]:
        """A fleet site's Flux images, only from a bundle (online hosts pull them like any image)."""
        if not (self.bundle and self.inventory.fleet):
            return []
        name = k3s.flux_images_asset(host.arch)
        return [self._artifact("flux_images", k3s.flux_images_path(host.arch), "0644",
                               f"flux-operator/{FLUX_OPERATOR_VERSION}/{name}", "", None)]

    def flux_operator_artifact(self) -> Artifact:
        """The Flux Operator's install.yaml for the first server's auto-deploy directory."""
        release = flux_operator_release(self.inventory.downloads.mirror)
        return self._artifact("flux_operator", k3s.FLUX_OPERATOR_MANIFEST, "0600",
                              f"flux-operator/{FLUX_OPERATOR_VERSION}/install.yaml", f"{release}/install.yaml", None,
                              f"{release}/{FLUX_OPERATOR_SUMS}")

    def _metallb_images(self, host: Host) -> Artifact:
        """Only in a bundle: online hosts pull the MetalLB images from their registry themselves."""
        name = k3s.metallb_images_asset(host.arch)
        return self._artifact("metallb_images", k3s.metallb_images_path(host.arch), "0644",
                              f"metallb/{self.inventory.metallb.version}/{name}", "", None)

    def metallb_artifact(self) -> Artifact:
        inv = self.inventory
        urls = release_urls(inv.downloads.mirror, inv.downloads.raw, inv.k3s.version, inv.metallb.version)
        return self._artifact("metallb", METALLB_REMOTE, "0644", f"metallb/{inv.metallb.version}/metallb-native.yaml",
                              urls["metallb"], inv.metallb.manifest_sha256)

    def local_file(self, artifact: Artifact) -> Path:
        """The bundle file, its sha256 checked against the manifest once per run."""
        path = self.bundle / artifact.relpath
        with self._lock:
            actual = self._verified.get(artifact.relpath)
            if actual is None:
                if not path.is_file():
                    raise ArtifactError(f"bundle file {path} is missing")
                actual = self._verified[artifact.relpath] = sha256_file(path)
        if actual != artifact.sha256:
            raise ArtifactError(f"bundle file {path} is corrupted: sha256 {actual}, manifest says {artifact.sha256}; "
                                f"rebuild the bundle with edge.bundle")
        return path

    def ensure(self, session: HostSession, artifacts: list[Artifact], facts: Facts | None) -> list[str]:
        """Put every artifact whose remote sha256 differs (all when the host was not probed) in place; return
        the keys that changed."""
        stale = stale_artifacts(artifacts, facts)
        if not stale:
            return []
        if self.bundle:
            for artifact in stale:
                session.upload(self.local_file(artifact), artifact.remote, artifact.mode, artifact.sha256)
            return [a.key for a in stale]
        out = session.check(proxy.exports(session, lowercase=True) + download_script(stale), "downloading artifacts")
        return [line.split("=", 1)[1] for line in out.splitlines() if line.startswith("changed=")]


def with_release_sha256(session: HostSession, artifacts: list[Artifact]) -> list[Artifact]:
    """The artifacts with the sha256 their release's checksum list gives, read by the host (through the site's
    proxy, as its downloads are) and nothing written; those the list does not name keep None."""
    urls = sorted({a.checksum_url for a in artifacts if a.sha256 is None and a.checksum_url})
    if not urls:
        return artifacts
    script = proxy.exports(session, lowercase=True) + "set -e\n" + "".join(
        f"echo '{_LIST_MARK} {url}'; curl -fsSL --retry 3 {shlex.quote(url)}\n" for url in urls)
    listed: dict[tuple[str, str], str] = {}
    url = ""
    for line in session.check(script, "reading the release's sha256 lists").splitlines():
        if line.startswith(_LIST_MARK):
            url = line[len(_LIST_MARK):].strip()
        elif len(line.split()) == 2:
            digest, name = line.split()
            listed[(url, name.lstrip("*"))] = digest
    return [replace(a, sha256=listed.get((a.checksum_url, a.url.rsplit("/", 1)[1])))
            if a.sha256 is None and a.checksum_url else a for a in artifacts]


_LIST_MARK = "--- mlops-edge-kit sha256 list"


def stale_artifacts(artifacts: list[Artifact], facts: Facts | None) -> list[Artifact]:
    """The artifacts whose sha256 on the host (probed as sha_<key>) is not the expected one."""
    return [a for a in artifacts if a.sha256 is None or facts is None or facts[f"sha_{a.key}"] != a.sha256]


def download_script(artifacts: list[Artifact]) -> str:
    """Remote script: fetch each artifact unless its sha256 matches, verify it, rename it into place."""
    lines = ["set -e", """fetch() {  # key url destination mode sha256
  [ -n "$5" ] || { echo "no published sha256 for $2" >&2; exit 43; }
  [ "$(sha256sum "$3" 2>/dev/null | cut -c1-64)" = "$5" ] && return 0
  mkdir -p "$(dirname "$3")"; tmp="$(dirname "$3")/.$(basename "$3").kit-new"
  curl -fsSL --retry 3 -o "$tmp" "$2" || { rm -f "$tmp"; echo "download of $2 failed" >&2; exit 42; }
  echo "$5  $tmp" | sha256sum -c --status || { rm -f "$tmp"; echo "sha256 mismatch for $2" >&2; exit 43; }
  chmod "$4" "$tmp"; mv -f "$tmp" "$3"; echo "changed=$1"
}"""]
    for url in sorted({a.checksum_url for a in artifacts if a.checksum_url}):
        lines.append(f"sums=\"$sums\n$(curl -fsSL --retry 3 {shlex.quote(url)})\" || "
                     f"{{ echo 'download of {url} failed' >&2; exit 42; }}")
    for a in artifacts:
        sha = a.sha256 or f"$(echo \"$sums\" | awk -v f={shlex.quote(a.url.rsplit('/', 1)[1])} '$2==f{{print $1}}')"
        lines.append(f"fetch {a.key} {shlex.quote(a.url)} {shlex.quote(a.remote)} {a.mode} \"{sha}\"")
    return "\n".join(lines) + "\n"
