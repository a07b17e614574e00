"""edge.bundle against a stand-in release mirror on 127.0.0.1: verified downloads, mismatches refused."""
import json

import pytest

from helpers import kit
from lab.artifacts import build_release_tree, serve_directory

VERSION, METALLB = "v1.31.4+k3s1", "v0.14.9"


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    pins = build_release_tree(root, VERSION, METALLB)
    with serve_directory(root) as url:
        yield root, url, pins


def bundle_args(url: str, pins: dict, out, arch: str = "arm64") -> list[str]:
    return ["edge.bundle", "--version", VERSION, "--arch", arch, "--out", str(out), "--metallb-version", METALLB,
            "--mirror", url, "--raw", url, "--install-sha256", pins["install.sh"],
            "--metallb-sha256", pins["metallb-native.yaml"]]


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
                                      f"metallb/{METALLB}/metallb-native.yaml"}
    assert (out / f"k3s/{VERSION}/k3s-arm64").read_bytes() == (release / "k3s-arm64").read_bytes()
    assert manifest["files"][f"k3s/{VERSION}/install.sh"] == pins["install.sh"]
    assert kit(*bundle_args(url, pins, out, arch="x86_64")).returncode == 0  # a second arch joins the manifest
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"k3s/{VERSION}/k3s" in manifest["files"] and f"k3s/{VERSION}/k3s-arm64" in manifest["files"]


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
               "--install-sha256", "x", "--metallb-sha256", "y")
    assert done.returncode == 2
    for flag in ("--version", "--arch", "--install-sha256", "--metallb-sha256"):
        assert flag in done.stderr
    assert "Traceback" not in done.stderr
