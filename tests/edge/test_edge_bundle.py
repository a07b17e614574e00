"""edge.bundle against a stand-in release mirror and OCI registry on 127.0.0.1: verified downloads, MetalLB images
as an OCI layout archive of the bundle's platform, the Flux Operator release and its images pulled by digest,
mismatches refused."""
import hashlib
import json
import tarfile

import pytest

from edge_hosts.artifacts.bundle import BundleError, FluxPins, build_bundle
from fleet import onsite
from helpers import kit
from lab.releases.artifacts import build_release_tree, serve_directory
from lab.releases.images import flux_pins, flux_repositories, metallb_repositories
from registry import serve_registry

VERSION, METALLB = "v1.31.4+k3s1", "v0.14.9"


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    pins = build_release_tree(root, VERSION, METALLB)
    with serve_directory(root) as url, serve_registry(metallb_repositories(METALLB) + flux_repositories()) as registry:
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
               "--install-sha256", "x", "--metallb-sha256", "y", "--registry-mirror", "quay.io",
               "--flux-operator-digest", "sha256:abc", "--flux-registry-mirror", "ghcr.io")
    assert done.returncode == 2
    for flag in ("--version", "--arch", "--install-sha256", "--metallb-sha256", "--registry-mirror",
                 "--flux-operator-digest", "--flux-registry-mirror"):
        assert flag in done.stderr
    assert "Traceback" not in done.stderr


FLUX = f"flux-operator/{onsite.flux.FLUX_OPERATOR_VERSION}"


def flux_bundle(url: str, pins: dict, out, arch: str = "arm64") -> dict:
    """A bundle with Flux, the controllers pinned to the stand-ins' digests (the CLI pins fleet.onsite's)."""
    operator, controllers = flux_pins([r for r in pins["registry"].repositories.values() if r.registry == "ghcr.io"])
    return build_bundle(VERSION, arch, out, METALLB, pins["install.sh"], pins["metallb-native.yaml"], url, url,
                        pins["registry"].url, FluxPins(operator, pins["registry"].url, controllers))


def test_flux_operator_release_and_images_by_digest_join_the_bundle(mirror, tmp_path):
    root, url, pins = mirror
    out = tmp_path / "bundle"
    manifest = flux_bundle(url, pins, out)
    assert manifest["flux_operator"] == "v0.58.1"
    assert {f"{FLUX}/install.yaml", f"{FLUX}/flux-operator_0.58.1_checksums.txt",
            f"{FLUX}/flux-images-arm64.tar"} <= set(manifest["files"])
    release = root / "controlplaneio-fluxcd/flux-operator/releases/download/v0.58.1"
    assert (out / FLUX / "install.yaml").read_bytes() == (release / "install.yaml").read_bytes()
    index, members = read_layout(out / FLUX / "flux-images-arm64.tar")
    repos = {r.reference: r for r in pins["registry"].repositories.values() if r.registry == "ghcr.io"}
    assert {e["annotations"]["io.containerd.image.name"] for e in index["manifests"]} == set(onsite.image_names())
    for entry in index["manifests"]:
        repo = repos[entry["annotations"]["io.containerd.image.name"]]
        assert entry["digest"] == repo.pinned.split("@")[1]  # the index a pod pins, kept whole
        assert entry["mediaType"] == repo.types["index"]
        assert members[f"blobs/sha256/{entry['digest'][7:]}"] == repo.index
        arm = repo.by_platform[("arm64", "v8")]
        image = json.loads(members[f"blobs/sha256/{arm[7:]}"])  # the platform's image under it, with its blobs
        for blob in (image["config"], *image["layers"]):
            assert sha256(members[f"blobs/sha256/{blob['digest'][7:]}"]) == blob["digest"][7:]
        assert f"blobs/sha256/{repo.by_platform[('amd64', '')][7:]}" not in members  # no other platform
    assert len(members) == 2 + 4 * 4  # per image: index, manifest, config, layer
    flux_manifests = [path for path, _ in pins["registry"].requests if "fluxcd/" in path and "/manifests/" in path]
    assert len(flux_manifests) >= 8 and all("/manifests/sha256:" in path for path in flux_manifests)  # by digest


def test_a_flux_image_served_under_another_digest_is_refused_and_nothing_is_written(mirror, tmp_path):
    _, url, pins = mirror
    registry = pins["registry"]
    kustomize = registry.repositories["fluxcd/kustomize-controller"]
    pinned = kustomize.pinned.split("@")[1]
    registry.tampered[pinned] = kustomize.index.replace(b'"schemaVersion": 2', b'"schemaVersion":2')
    with pytest.raises(BundleError, match="digest mismatch for manifest of ghcr.io/fluxcd/kustomize-controller"):
        flux_bundle(url, pins, tmp_path / "bundle")
    assert not (tmp_path / "bundle" / "manifest.json").exists()


def test_the_cli_pulls_the_controllers_by_fleet_onsites_pins(mirror, tmp_path):
    _, url, pins = mirror
    operator, _ = flux_pins(flux_repositories())
    out = tmp_path / "bundle"
    done = kit(*bundle_args(url, pins, out), "--flux-operator-digest", operator,
               "--flux-registry-mirror", pins["registry"].url)
    assert done.returncode == 1  # the stand-in registry has no image under the real pins
    pinned = onsite.FLUX_IMAGES["ghcr.io/fluxcd/source-controller:v1.9.4"]
    assert f"/v2/fluxcd/source-controller/manifests/{pinned}: HTTP 404" in done.stderr
    assert not out.exists()


def test_a_tampered_flux_operator_manifest_is_refused(mirror, tmp_path):
    root, url, pins = mirror
    install = root / "controlplaneio-fluxcd/flux-operator/releases/download/v0.58.1/install.yaml"
    install.write_bytes(install.read_bytes() + b"# changed\n")
    with pytest.raises(BundleError, match="checksum mismatch for install.yaml"):
        flux_bundle(url, pins, tmp_path / "bundle")


def test_flux_has_no_armv7_images(mirror, tmp_path):
    _, url, pins = mirror
    with pytest.raises(BundleError, match="controlplaneio-fluxcd/flux-operator:v0.58.1 has no linux/arm/v7 image"):
        flux_bundle(url, pins, tmp_path / "bundle", arch="armv7")
