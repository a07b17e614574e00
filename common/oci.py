"""Container images pulled straight from an OCI registry (distribution API, anonymous bearer tokens) for one
platform, every blob verified against its sha256 digest, written as an OCI image layout archive that
containerd (k3s) imports from its agent images directory."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 60
MAX_MANIFEST_BYTES = 4 << 20
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
NAME_ANNOTATION = "io.containerd.image.name"
TAG_ANNOTATION = "org.opencontainers.image.ref.name"


class RegistryError(Exception):
    """The registry refused a request, or served something that does not match its digest or platform."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status  # the HTTP status when the registry answered one


@dataclass(frozen=True)
class Platform:
    architecture: str  # amd64 | arm64 | arm
    variant: str = ""  # "v7" for arm; empty matches any

    def matches(self, spec: dict) -> bool:
        return (spec.get("os") == "linux" and spec.get("architecture") == self.architecture
                and (not self.variant or spec.get("variant") == self.variant))

    def __str__(self) -> str:
        return "/".join(filter(None, ("linux", self.architecture, self.variant)))


@dataclass(frozen=True)
class ImageRef:
    """quay.io/metallb/controller:v0.14.9 -> name quay.io, repository metallb/controller, tag v0.14.9; a pinned
    reference (ghcr.io/fluxcd/source-controller:v1.9.4@sha256:...) also has the digest it is pulled by."""
    name: str
    repository: str
    tag: str
    digest: str = ""

    @classmethod
    def parse(cls, reference: str) -> "ImageRef":
        reference, _, digest = reference.partition("@")
        registry, _, rest = reference.partition("/")
        repository, _, tag = rest.rpartition(":")
        return cls(registry, repository, tag, digest)

    def __str__(self) -> str:
        return f"{self.name}/{self.repository}:{self.tag}"


def _challenge(header: str) -> dict[str, str]:
    """The parameters of a 'Bearer realm="...",service="...",scope="..."' challenge."""
    return dict(re.findall(r'(\w+)="([^"]*)"', header)) if header.lower().startswith("bearer") else {}


class Registry:
    """The distribution API of one registry; a token per repository when the registry asks for one."""

    def __init__(self, base_url: str, credentials: tuple[str, str] | None = None):
        self.base_url = base_url.rstrip("/")
        self._tokens: dict[str, str] = {}
        self._credentials = credentials  # (user, password) for the token service; anonymous when None

    def _open(self, repository: str, path: str, accept: str = "", method: str = "GET", data: bytes | None = None,
              content_type: str = ""):
        """A request on /v2/<repository>/<path> (or an absolute URL the registry gave, e.g. an upload's)."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/v2/{repository}/{path}"
        headers = {"Accept": accept} if accept else {}
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            if repository in self._tokens:  # never forwarded to a redirect target (blob CDNs sign their URLs)
                request.add_unredirected_header("Authorization", f"Bearer {self._tokens[repository]}")
            try:
                return urllib.request.urlopen(request, timeout=TIMEOUT_S)
            except urllib.error.HTTPError as err:
                challenge = _challenge(err.headers.get("WWW-Authenticate", ""))
                if err.code != 401 or attempt == 2 or not challenge.get("realm"):
                    raise RegistryError(f"{method} {url}: HTTP {err.code} {err.reason}", err.code) from None
                self._tokens[repository] = self._token(repository, challenge)
            except (urllib.error.URLError, OSError) as err:
                raise RegistryError(f"{method} {url} failed: {err}") from None
        raise AssertionError("unreachable")

    def _token(self, repository: str, challenge: dict[str, str]) -> str:
        query = {"scope": challenge.get("scope") or f"repository:{repository}:pull"}
        if challenge.get("service"):
            query["service"] = challenge["service"]
        request = urllib.request.Request(f"{challenge['realm']}?{urllib.parse.urlencode(query)}")
        if self._credentials:
            basic = base64.b64encode(":".join(self._credentials).encode()).decode()
            request.add_unredirected_header("Authorization", f"Basic {basic}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
                answer = json.loads(reply.read(MAX_MANIFEST_BYTES))
        except urllib.error.HTTPError as err:
            raise RegistryError(f"token from {challenge['realm']}: HTTP {err.code} {err.reason}", err.code) from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise RegistryError(f"token from {challenge['realm']} failed: {err}") from None
        token = answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise RegistryError(f"the token service {challenge['realm']} answered without a token")
        return token

    def manifest(self, ref: ImageRef, reference: str) -> tuple[str, bytes]:
        """(media type, raw bytes) of a manifest or index by tag or digest; a digest is verified."""
        with self._open(ref.repository, f"manifests/{reference}", ", ".join(INDEX_TYPES + MANIFEST_TYPES)) as reply:
            raw = reply.read(MAX_MANIFEST_BYTES + 1)
            header_type = reply.headers.get_content_type()
        if len(raw) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{ref}: manifest {reference} is larger than {MAX_MANIFEST_BYTES} bytes")
        if reference.startswith("sha256:"):
            _check(reference, "sha256:" + hashlib.sha256(raw).hexdigest(), f"manifest of {ref}")
        try:
            media_type = json.loads(raw).get("mediaType") or header_type
        except (ValueError, AttributeError):
            raise RegistryError(f"{ref}: manifest {reference} is not JSON") from None
        if media_type not in INDEX_TYPES + MANIFEST_TYPES:
            raise RegistryError(f"{ref}: unsupported manifest type {media_type}")
        return media_type, raw

    def blob(self, ref: ImageRef, descriptor: dict, blobs: Path) -> Path:
        """Stream a blob into blobs/<hex>, verifying size and sha256 on the way; kept only when both match."""
        digest = descriptor["digest"]
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
            raise RegistryError(f"{ref}: unsupported digest {digest}")
        dest = blobs / hexdigest
        if dest.is_file():
            return dest
        partial, sha, size = dest.with_name(f".{hexdigest}.part"), hashlib.sha256(), 0
        with self._open(ref.repository, f"blobs/{digest}") as reply, open(partial, "wb") as out:
            for chunk in iter(lambda: reply.read(1 << 20), b""):
                sha.update(chunk)
                size += len(chunk)
                out.write(chunk)
        _check(digest, f"sha256:{sha.hexdigest()}", f"blob of {ref}", partial)
        if size != descriptor.get("size", size):
            partial.unlink()
            raise RegistryError(f"blob {digest} of {ref}: {size} bytes, the manifest says {descriptor['size']}")
        partial.rename(dest)
        return dest


def _check(expected: str, actual: str, what: str, partial: Path | None = None) -> None:
    if actual != expected:
        if partial:
            partial.unlink()
        raise RegistryError(f"digest mismatch for {what} ({expected}): got {actual}; refusing it")


def pull(registry: Registry, ref: ImageRef, platform: Platform, blobs: Path) -> dict:
    """Fetch the platform's manifest, config and layers into blobs/; return the descriptor the archive names: the
    platform's manifest, or for a pinned reference what the pin names (an index is kept whole, with only the
    platform's image under it: the digest a pod asks for is the index's, and k3s imports an index whose other
    platforms are missing, pkg/agent/containerd/containerd.go preloadFile: WithAllPlatforms, WithSkipMissing)."""
    media_type, raw = registry.manifest(ref, ref.digest or ref.tag)
    top = {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    if media_type in INDEX_TYPES:
        entries = [m for m in json.loads(raw).get("manifests", []) if platform.matches(m.get("platform", {}))]
        if not entries:
            raise RegistryError(f"{ref} has no {platform} image")
        if ref.digest:
            (blobs / top["digest"].split(":", 1)[1]).write_bytes(raw)
        media_type, raw = registry.manifest(ref, entries[0]["digest"])
    image = _image(registry, ref, platform, blobs, media_type, raw)
    return top if ref.digest else image


def _image(registry: Registry, ref: ImageRef, platform: Platform, blobs: Path, media_type: str, raw: bytes) -> dict:
    """One platform's image manifest with its config and layers into blobs/; its descriptor."""
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if media_type not in MANIFEST_TYPES:
        raise RegistryError(f"{ref}: {digest} is a {media_type}, not an image manifest")
    manifest = json.loads(raw)
    config = json.loads(registry.blob(ref, manifest["config"], blobs).read_bytes())
    if not platform.matches({"os": config.get("os"), "architecture": config.get("architecture"),
                             "variant": config.get("variant") or platform.variant}):
        raise RegistryError(f"{ref}: the image is {config.get('os')}/{config.get('architecture')}, not {platform}")
    for layer in manifest.get("layers", []):
        registry.blob(ref, layer, blobs)
    (blobs / digest.split(":", 1)[1]).write_bytes(raw)
    return {"mediaType": media_type, "digest": digest, "size": len(raw)}


def layout_index(images: list[tuple[ImageRef, dict]]) -> dict:
    """index.json of an OCI layout: each manifest annotated with its full name (containerd) and tag (OCI)."""
    manifests = [{**descriptor, "annotations": {NAME_ANNOTATION: str(ref), TAG_ANNOTATION: ref.tag}}
                 for ref, descriptor in images]
    return {"schemaVersion": 2, "mediaType": INDEX_TYPES[0], "manifests": manifests}


def write_archive(dest: Path, images: list[tuple[ImageRef, dict]], blobs: Path) -> None:
    """One tar: oci-layout, index.json, blobs/sha256/<hex> (reproducible: fixed owners and times)."""
    members = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
               ("index.json", json.dumps(layout_index(images), indent=2).encode())]
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            tar.addfile(_member(name, len(data)), io.BytesIO(data))
        for blob in sorted(p for p in blobs.iterdir() if not p.name.startswith(".")):
            with open(blob, "rb") as handle:
                tar.addfile(_member(f"blobs/sha256/{blob.name}", blob.stat().st_size), handle)


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


def pull_archive(base_url: str, references: list[str], platform: Platform, dest: Path, work: Path) -> None:
    """Pull every reference (name:tag, or name:tag@digest: pulled by that digest, verified) for the platform from
    base_url and write them as one layout archive at dest."""
    registry, blobs = Registry(base_url), work / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    images = [(ref, pull(registry, ref, platform, blobs)) for ref in map(ImageRef.parse, references)]
    write_archive(dest, images, blobs)
