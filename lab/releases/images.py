"""Stand-in MetalLB and Flux container images: tiny but valid images (a config and one gzip layer) for every
platform, as a registry serves them (an index per tag, also by its digest) and as the air-gap bundle carries them
(an OCI layout archive).

Repositories ending in "controller" are published with OCI media types, the others with Docker ones, as registries
do both. The Flux stand-ins have digests of their own, not fleet.onsite's pins: the lab's bundle pins these."""
import gzip
import hashlib
import io
import json
import tarfile

from fleet import onsite

REGISTRY = "quay.io"
REPOSITORIES = ("metallb/controller", "metallb/speaker")
# release arch (k3s naming) -> (architecture, variant) of the image
PLATFORMS = {"amd64": ("amd64", ""), "arm64": ("arm64", "v8"), "arm": ("arm", "v7")}
OCI = {"index": "application/vnd.oci.image.index.v1+json", "manifest": "application/vnd.oci.image.manifest.v1+json",
       "config": "application/vnd.oci.image.config.v1+json", "layer": "application/vnd.oci.image.layer.v1.tar+gzip"}
DOCKER = {"index": "application/vnd.docker.distribution.manifest.list.v2+json",
          "manifest": "application/vnd.docker.distribution.manifest.v2+json",
          "config": "application/vnd.docker.container.image.v1+json",
          "layer": "application/vnd.docker.image.rootfs.diff.tar.gzip"}


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Repository:
    """One image repository at one tag: its index, per-platform manifests and blobs, all content-addressed."""

    def __init__(self, repository: str, tag: str, platforms=PLATFORMS.values(), registry: str = REGISTRY):
        self.repository, self.tag, self.registry = repository, tag, registry
        self.types = OCI if repository.endswith("controller") else DOCKER
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.by_platform: dict[tuple[str, str], str] = {}
        entries = [self._image(arch, variant) for arch, variant in platforms]
        entries.append(self._image("unknown", "", os="unknown"))  # like a build attestation entry
        self.index = json.dumps({"schemaVersion": 2, "mediaType": self.types["index"],
                                 "manifests": entries}).encode()
        self.manifests[digest(self.index)] = self.index  # a registry serves an index by its digest too

    @property
    def reference(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def pinned(self) -> str:
        """name:tag@digest of the index, as a pod that pins the image asks for it."""
        return f"{self.reference}@{digest(self.index)}"

    def _image(self, architecture: str, variant: str, os: str = "linux") -> dict:
        layer_tar = _tar({"bin/" + self.repository.rsplit("/", 1)[1]: f"stand-in {self.reference} "
                          f"{os}/{architecture}{variant}\n".encode()})
        layer = gzip.compress(layer_tar, mtime=0)
        platform = {"os": os, "architecture": architecture, **({"variant": variant} if variant else {})}
        config = json.dumps({**platform, "config": {"User": "65534"},
                             "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": self.types["manifest"],
                               "config": _descriptor(self.types["config"], config),
                               "layers": [_descriptor(self.types["layer"], layer)]}).encode()
        self.blobs.update({digest(config): config, digest(layer): layer})
        self.manifests[digest(manifest)] = manifest
        self.by_platform[(architecture, variant)] = digest(manifest)
        return _descriptor(self.types["manifest"], manifest, platform=platform)

    def manifest_for(self, release_arch: str) -> bytes:
        return self.manifests[self.by_platform[PLATFORMS[release_arch]]]


def metallb_repositories(version: str) -> list[Repository]:
    return [Repository(name, version) for name in REPOSITORIES]


def flux_repositories() -> list[Repository]:
    """The Flux Operator and the controllers fleet.onsite names, at their tags (amd64, arm64: what they publish)."""
    platforms = [PLATFORMS["amd64"], PLATFORMS["arm64"]]
    names = [onsite.OPERATOR_IMAGE, *onsite.FLUX_IMAGES]
    return [Repository(rest.rsplit(":", 1)[0], rest.rsplit(":", 1)[1], platforms, host)
            for host, _, rest in (name.partition("/") for name in names)]


def flux_pins(repositories: list[Repository]) -> tuple[str, dict[str, str]]:
    """(the operator's index digest, {controller name:tag: index digest}): the pins a bundle of these takes."""
    pins = {repo.reference: digest(repo.index) for repo in repositories}
    return pins.pop(onsite.OPERATOR_IMAGE), pins


def layout_archive(version: str, release_arch: str) -> bytes:
    """The bundle's metallb-images-<arch>.tar: an OCI layout with the controller and speaker of one platform."""
    return _layout(metallb_repositories(version), release_arch, pinned=False)


def flux_layout_archive(release_arch: str) -> bytes:
    """The bundle's flux-images-<arch>.tar: each image's index (by its digest) with the platform's image under it."""
    return _layout(flux_repositories(), release_arch, pinned=True)


def _layout(repositories: list[Repository], release_arch: str, pinned: bool) -> bytes:
    files, entries = {}, []
    for repo in repositories:
        manifest = repo.manifest_for(release_arch)
        body = json.loads(manifest)
        for blob in (body["config"], *body["layers"], _descriptor(repo.types["manifest"], manifest)):
            data = manifest if blob["digest"] == digest(manifest) else repo.blobs[blob["digest"]]
            files[f"blobs/sha256/{blob['digest'].split(':', 1)[1]}"] = data
        top = _descriptor(repo.types["index"], repo.index) if pinned else _descriptor(repo.types["manifest"], manifest)
        if pinned:
            files[f"blobs/sha256/{digest(repo.index).split(':', 1)[1]}"] = repo.index
        entries.append({**top, "annotations": {
            "io.containerd.image.name": repo.reference, "org.opencontainers.image.ref.name": repo.tag}})
    index = {"schemaVersion": 2, "mediaType": OCI["index"], "manifests": entries}
    return _tar({"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": json.dumps(index).encode(),
                 **files})
