"""edge.bundle against a stand-in release mirror and OCI registry on 127.0.0.1: verified downloads, MetalLB images
as an OCI layout archive of the bundle's platform, mismatches refused."""
import hashlib
import json
import tarfile

import pytest

from helpers import kit
from lab.artifacts import build_release_tree, serve_directory
from lab.images import metallb_repositories
from registry import serve_registry

VERSION, METALLB = "v1.31.4+k3s1", "v0.14.9"


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    pins = build_release_tree(root, VERSION, METALLB)
    with serve_directory(root) as url, serve_registry(metallb_repositories(METALLB)) as registry:
        yield root, url, {**pins, "registry": registry}


def bundle_args(url: str, pins: dict, out, arch: str = "arm64") -> list[str]:
    return ["edge.bundle", "--version", VERSION, "--arch", arch, "--out", str(out), "--metallb-version", METALLB,
            "--mirror", url, "--raw", url, "--install-sha256", pins["install.sh"],
            "--metallb-sha256", pins["metallb-native.yaml"], "--registry-mirror", pins["registry"].url]


def test_bundle_downloads_and_verifies_every_artifact(mirror, tmp_path):
    root, url, pins = mirror
    out = tmp_path / "bundle"
    done = kit(*bundle_args(url, pins, out))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    release = root / "k3s-io/k3s/releases/download" / VERSION
    assert manifest["k3s"] == VERSION and manifest["metallb"] == METALLB
    assert set(manifest["files"]) == {f"k3s/{VERSION}/k3s-arm64", f"k3s/{VERSION}/k3s-airgap-images-arm64.tar.zst",
                                      f"k3s/{VERSION}/sha256sum-arm64.txt", f"k3s/{VERSION}/install.sh",
                                      f"metallb/{METALLB}/metallb-native.yaml",
                                      f"metallb/{METALLB}/metallb-images-arm64.tar"}
    assert (out / f"k3s/{VERSION}/k3s-arm64").read_bytes() == (release / "k3s-arm64").read_bytes()
    assert manifest["files"][f"k3s/{VERSION}/install.sh"] == pins["install.sh"]
    assert kit(*bundle_args(url, pins, out, arch="x86_64")).returncode == 0  # a second arch joins the manifest
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"k3s/{VERSION}/k3s" in manifest["files"] and f"k3s/{VERSION}/k3s-arm64" in manifest["files"]
    for arch in ("arm64", "amd64"):
        images = out / f"metallb/{METALLB}/metallb-images-{arch}.tar"
        assert manifest["files"][f"metallb/{METALLB}/metallb-images-{arch}.tar"] == sha256(images.read_bytes())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_layout(path) -> tuple[dict, dict[str, bytes]]:
    """(index.json, {member name: bytes}) of an OCI layout archive."""
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    return json.loads(members["index.json"]), members


@pytest.mark.parametrize("arch,platform", [("arm64", ("arm64", "v8")), ("armv7", ("arm", "v7")),
                                           ("x86_64", ("amd64", ""))])
def test_metallb_images_are_one_oci_layout_of_the_bundles_platform(mirror, tmp_path, arch, platform):
    _, url, pins = mirror
    registry, out = pins["registry"], tmp_path / "bundle"
    done = kit(*bundle_args(url, pins, out, arch=arch))
    assert done.returncode == 0, done.stderr
    suffix = {"arm64": "arm64", "armv7": "arm", "x86_64": "amd64"}[arch]
    index, members = read_layout(out / f"metallb/{METALLB}/metallb-images-{suffix}.tar")
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    repos = {r.repository: r for r in registry.repositories.values()}
    names = {}
    for entry in index["manifests"]:
        names[entry["annotations"]["io.containerd.image.name"]] = entry["annotations"]["org.opencontainers.image.ref.name"]
        repo = repos[entry["annotations"]["io.containerd.image.name"].split("/", 1)[1].rsplit(":", 1)[0]]
        assert entry["digest"] == repo.by_platform[platform]  # the platform's manifest, from the index
        assert entry["mediaType"] == repo.types["manifest"]
        manifest = members[f"blobs/sha256/{entry['digest'][7:]}"]
        assert "sha256:" + sha256(manifest) == entry["digest"] and len(manifest) == entry["size"]
        for blob in (json.loads(manifest)["config"], *json.loads(manifest)["layers"]):
            assert sha256(members[f"blobs/sha256/{blob['digest'][7:]}"]) == blob["digest"][7:]
    assert names == {f"quay.io/metallb/controller:{METALLB}": METALLB, f"quay.io/metallb/speaker:{METALLB}": METALLB}
    other_platforms = {d for r in repos.values() for p, d in r.by_platform.items() if p != platform}
    assert not {f"blobs/sha256/{d[7:]}" for d in other_platforms} & set(members)  # no other platform's manifest
    assert len(members) == 2 + 2 * 3  # oci-layout, index.json, and per image: manifest, config, one layer
    tokens = [auth for path, auth in registry.requests if "/manifests/" in path]
    assert None in tokens and "Bearer anon-metallb-controller" in tokens  # challenged first, then the token
    assert all(auth is None for path, auth in registry.requests if path.startswith("/cdn/"))  # no token to the CDN


def test_a_tampered_image_blob_is_refused_and_nothing_is_written(mirror, tmp_path):
    _, url, pins = mirror
    registry = pins["registry"]
    speaker = registry.repositories["metallb/speaker"]
    manifest = json.loads(speaker.manifest_for("arm64"))
    layer = manifest["layers"][0]["digest"]
    registry.tampered[layer] = speaker.blobs[layer] + b"tampered"
    out = tmp_path / "bundle"
    done = kit(*bundle_args(url, pins, out))
    assert done.returncode == 1
    assert f"digest mismatch for blob of quay.io/metallb/speaker:{METALLB} ({layer})" in done.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_a_tampered_release_asset_is_refused_and_nothing_is_written(mirror, tmp_path):
    root, url, pins = mirror
    asset = root / "k3s-io/k3s/releases/download" / VERSION / "k3s-airgap-images-arm64.tar.zst"
    asset.write_bytes(asset.read_bytes() + b"tampered")
    out = tmp_path / "bundle"
    done = kit(*bundle_args(url, pins, out))
    assert done.returncode == 1
    assert "checksum mismatch for k3s-airgap-images-arm64.tar.zst" in done.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_an_unpinned_install_script_change_is_refused(mirror, tmp_path):
    root, url, pins = mirror
    (root / "k3s-io/k3s" / VERSION / "install.sh").write_text("#!/bin/sh\necho changed upstream\n")
    done = kit(*bundle_args(url, pins, tmp_path / "bundle"))
    assert done.returncode == 1 and "checksum mismatch for install.sh" in done.stderr
    assert not (tmp_path / "bundle" / "manifest.json").exists()


def test_bad_arguments_exit_2_all_at_once(tmp_path):
    done = kit("edge.bundle", "--version", "latest", "--arch", "mips", "--out", str(tmp_path),
               "--install-sha256", "x", "--metallb-sha256", "y", "--registry-mirror", "quay.io")
    assert done.returncode == 2
    for flag in ("--version", "--arch", "--install-sha256", "--metallb-sha256", "--registry-mirror"):
        assert flag in done.stderr
    assert "Traceback" not in done.stderr
