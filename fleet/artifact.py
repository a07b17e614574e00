"""OCI artifacts the way Flux reads them, built reproducibly, and pushed with the kit's registry client.

Site artifact: an OCI image manifest, config of CONFIG_MEDIA_TYPE, one CONTENT_MEDIA_TYPE layer (tar+gzip of
the rendered files), annotations source/revision/created as `flux push artifact --reproducible` writes them.
The tar is built like fluxcd/pkg/tar (v1.2.0, tar.go): files in lexical order, uid/gid 0, no user or group
names, zero times; gzip with mtime 0. The same content and revision therefore give the same digest.

Model artifact: an OCI image manifest whose one layer holds the model files, so the kubelet can mount it as
an image volume.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from common.oci import MANIFEST_TYPES, MAX_MANIFEST_BYTES, Registry, RegistryError
from fleet import flux

OCI_MANIFEST = MANIFEST_TYPES[0]
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MODEL_ARTIFACT_TYPE = "application/vnd.mlops-edge-kit.model.v1"


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclass(frozen=True)
class Artifact:
    config: Blob
    layers: tuple[Blob, ...]
    manifest: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def tar_gzip(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """(gzip, tar) of files in lexical order with fixed owners, modes and times."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = \
                len(files[name]), 0o644, 0, 0, 0, "", ""
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(raw.getvalue(), mtime=0), raw.getvalue()


def _manifest(config: Blob, layers: tuple[Blob, ...], annotations: dict[str, str], artifact_type: str = "") -> bytes:
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
                "layers": [layer.descriptor() for layer in layers], "annotations": annotations}
    if artifact_type:
        manifest["artifactType"] = artifact_type
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def site_artifact(files: dict[str, bytes], source: str, revision: str) -> Artifact:
    """The site's desired state as Flux's OCIRepository pulls it; revision is '<ref>@sha1:<commit>'."""
    layer = Blob(flux.CONTENT_MEDIA_TYPE, tar_gzip(files)[0])
    config = Blob(flux.CONFIG_MEDIA_TYPE, b"{}")
    annotations = {flux.SOURCE_ANNOTATION: source, flux.REVISION_ANNOTATION: revision,
                   flux.CREATED_ANNOTATION: flux.REPRODUCIBLE_CREATED}
    return Artifact(config, (layer,), _manifest(config, (layer,), annotations))


def model_files(folder: Path) -> dict[str, bytes]:
    """Every regular file under folder, by its relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def model_artifact(files: dict[str, bytes], name: str, version: str) -> Artifact:
    """The model files as an image layer (an image volume source), reproducible like the site artifacts."""
    compressed, plain = tar_gzip(files)
    layer = Blob(OCI_LAYER_GZIP, compressed)
    diff_id = "sha256:" + hashlib.sha256(plain).hexdigest()
    config = Blob(OCI_IMAGE_CONFIG, json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}},
        sort_keys=True, separators=(",", ":")).encode())
    annotations = {"org.opencontainers.image.title": name, "org.opencontainers.image.version": version,
                   flux.CREATED_ANNOTATION: flux.REPRODUCIBLE_CREATED}
    return Artifact(config, (layer,), _manifest(config, (layer,), annotations, MODEL_ARTIFACT_TYPE))


class Pusher:
    """Push, tag and read manifests through common.oci.Registry (tokens per repository)."""

    def __init__(self, base_url: str, credentials: tuple[str, str] | None = None):
        self.registry = Registry(base_url, credentials)

    def has_blob(self, repository: str, digest: str) -> bool:
        try:
            self.registry._open(repository, f"blobs/{digest}", method="HEAD").close()
            return True
        except RegistryError as err:
            if err.status == 404:
                return False
            raise

    def push_blob(self, repository: str, blob: Blob) -> None:
        if self.has_blob(repository, blob.digest):
            return
        with self.registry._open(repository, "blobs/uploads/", method="POST", data=b"") as reply:
            location = urllib.parse.urljoin(self.registry.base_url + "/", reply.headers["Location"])
        separator = "&" if "?" in location else "?"
        url = f"{location}{separator}digest={urllib.parse.quote(blob.digest)}"
        self.registry._open(repository, url, method="PUT", data=blob.data,
                            content_type="application/octet-stream").close()

    def put_manifest(self, repository: str, reference: str, manifest: bytes) -> None:
        self.registry._open(repository, f"manifests/{reference}", method="PUT", data=manifest,
                            content_type=OCI_MANIFEST).close()

    def push(self, repository: str, artifact: Artifact, tags: tuple[str, ...] = ()) -> str:
        """Upload blobs absent from the repository, then the manifest by digest and under each tag."""
        for blob in (artifact.config, *artifact.layers):
            self.push_blob(repository, blob)
        for reference in (artifact.digest, *tags):
            self.put_manifest(repository, reference, artifact.manifest)
        return artifact.digest

    def manifest(self, repository: str, reference: str) -> tuple[str, bytes] | None:
        """(digest, bytes) of a manifest by tag or digest; None when the registry has none."""
        try:
            with self.registry._open(repository, f"manifests/{reference}", accept=OCI_MANIFEST) as reply:
                raw = reply.read(MAX_MANIFEST_BYTES + 1)
        except RegistryError as err:
            if err.status == 404:
                return None
            raise
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{repository}: manifest {reference} served with digest {digest}; refusing it")
        return digest, raw

    def blob(self, repository: str, digest: str) -> bytes:
        with self.registry._open(repository, f"blobs/{digest}") as reply:
            data = reply.read()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RegistryError(f"{repository}: blob {digest} does not match its digest; refusing it")
        return data

    def tag(self, repository: str, digest: str, tag: str) -> None:
        """Point tag at an existing manifest (re-PUT of its exact bytes, so the digest is unchanged)."""
        found = self.manifest(repository, digest)
        if found is None:
            raise RegistryError(f"{repository}: no manifest {digest} to tag {tag}", 404)
        self.put_manifest(repository, tag, found[1])
