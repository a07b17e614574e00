"""fleet.release against a real registry (CNCF distribution): artifacts as Flux reads them, reproducible, and a
site's credential reading only its own repository (enforced by the registry's token authentication)."""
import gzip
import io
import json
import subprocess
import sys
import tarfile

import pytest
import yaml

from common.oci import RegistryError
from fleet import flux
from fleet.artifact import Pusher
from fleet.config import load_fleet
from fleet.release import build, push_release
from tests.fleet.conftest import SEEDS

REVISION = "main@sha1:" + "4" * 40


def point_at(seeds, registry) -> None:
    """Every environment of the seeds uses the test registry (plain HTTP on loopback)."""
    path = seeds / "fleet.yaml"
    data = yaml.safe_load(path.read_text())
    for env in data["environments"].values():
        env.pop("stack", None)  # an address instead of the stack's registry
        env.update(registry=registry.host, insecure=True)
        if "receiver" in env:  # no stack deploys its receiver either: name one
            env["receiver"].setdefault("address", "https://fleet-receiver.test:8443")
    path.write_text(yaml.safe_dump(data))


def _release(seeds, registry, env="production", name="r1", revision=REVISION):
    fleet = load_fleet(seeds)
    models, rendered, sites = build(fleet, env, seeds.parent / "models", revision)
    pusher = Pusher(registry.url, registry.user("release", [("*", ("pull", "push"))]))
    return push_release(fleet, env, name, models, sites, revision, pusher), rendered


def test_site_artifacts_pulled_back_by_digest_are_what_flux_reads(seeds, registry):
    point_at(seeds, registry)
    release, rendered = _release(seeds, registry)
    reader = Pusher(registry.url, registry.user("auditor", [("*", ("pull",))]))
    for item in rendered:
        repo = flux.repository_path("production", item.site.name)
        digest = release.sites[item.site.name]
        assert reader.manifest(repo, "r1")[0] == digest  # the tag points at the digest
        manifest = json.loads(reader.manifest(repo, digest)[1])
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert manifest["config"]["mediaType"] == "application/vnd.cncf.flux.config.v1+json"
        assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.cncf.flux.content.v1.tar+gzip"]
        assert manifest["annotations"] == {
            "org.opencontainers.image.source": "https://dev.azure.com/contoso/mlops/_git/mlops-edge-kit",
            "org.opencontainers.image.revision": REVISION, "org.opencontainers.image.created": "1970-01-01T00:00:00Z"}
        layer = reader.blob(repo, manifest["layers"][0]["digest"])
        assert layer[4:8] == b"\0\0\0\0"  # gzip header mtime 0
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
            members = tar.getmembers()
            assert [(m.name, m.uid, m.gid, m.uname, m.mtime) for m in members] == [("site.yaml", 0, 0, "", 0)]
            assert tar.extractfile(members[0]).read() == item.content["site.yaml"]


def test_the_same_content_pushed_again_gives_the_same_digest(seeds, registry):
    point_at(seeds, registry)
    first, _ = _release(seeds, registry, name="same-1")
    again, _ = _release(seeds, registry, name="same-2")
    assert again.sites == first.sites and again.models == first.models
    moved, _ = _release(seeds, registry, name="other", revision="main@sha1:" + "5" * 40)
    assert all(moved.sites[s] != first.sites[s] for s in first.sites)  # another commit, another artifact


def test_the_model_travels_by_digest_and_the_app_mounts_that_digest(seeds, registry):
    point_at(seeds, registry)
    release, rendered = _release(seeds, registry)
    reader = Pusher(registry.url, registry.user("auditor2", [("*", ("pull",))]))
    for version, digest in release.models.items():
        assert reader.manifest("models/defect-detector", version)[0] == digest
        manifest = json.loads(reader.manifest("models/defect-detector", digest)[1])
        layer = reader.blob("models/defect-detector", manifest["layers"][0]["digest"])
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
            assert tar.extractfile("model.onnx").read() == f"weights {version}".encode()
    for item in rendered:
        deployment = next(o for o in yaml.safe_load_all(item.content["site.yaml"]) if o["kind"] == "Deployment")
        reference = deployment["spec"]["template"]["spec"]["volumes"][0]["image"]["reference"]
        assert reference == f"{registry.host}/models/defect-detector@{release.models[item.site.model.version]}"


def test_a_site_credential_reads_its_own_repository_only(seeds, registry):
    point_at(seeds, registry)
    _release(seeds, registry)
    own = "fleet/production/plant-berlin"
    site = Pusher(registry.url, registry.user("site-plant-berlin", [(own, ("pull",)), ("models/*", ("pull",))]))
    assert site.manifest(own, "r1") is not None
    assert site.manifest("models/defect-detector", "7") is not None
    with pytest.raises(RegistryError) as denied:
        site.manifest("fleet/production/store-lyon", "r1")
    assert denied.value.status == 401
    with pytest.raises(RegistryError) as no_push:
        site.put_manifest(own, "live", site.manifest(own, "r1")[1])
    assert no_push.value.status == 401
    assert ("site-plant-berlin", "fleet/production/store-lyon:") in registry.tokens.issued  # asked, granted nothing


def test_kit_release_takes_credentials_from_the_environment_only(seeds, registry, monkeypatch):
    point_at(seeds, registry)
    user, password = registry.user("pipeline", [("*", ("pull", "push"))])
    env = {"FLEET_REGISTRY_USER": user, "FLEET_REGISTRY_PASSWORD": password, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "common.cli", "fleet.release", "--env", "qa", "--name", "cli-1",
                           "--root", str(seeds), "--models", str(seeds.parent / "models"), "--revision", REVISION,
                           "--json"], cwd=SEEDS.parent, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    assert set(json.loads(done.stdout.strip().splitlines()[-1])["sites"]) == {"qa-line"}
    denied = subprocess.run([sys.executable, "-m", "common.cli", "fleet.release", "--env", "qa", "--name", "cli-2",
                             "--root", str(seeds), "--models", str(seeds.parent / "models"), "--revision", REVISION],
                            cwd=SEEDS.parent, capture_output=True, text=True, env=dict(env, FLEET_REGISTRY_PASSWORD="x"))
    assert denied.returncode == 1 and "HTTP 401" in denied.stderr and "Traceback" not in denied.stderr
    assert password not in denied.stderr
