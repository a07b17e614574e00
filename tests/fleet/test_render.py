"""fleet.render: the seeds' sites rendered, core objects valid for Kubernetes 1.37 and Flux/MetalLB objects valid
under the upstream CRDs (strict), patches by ring and site, bad seeds reported all at once with exit 2."""
import random
import subprocess
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fleet import flux
from fleet.config import FleetError, load_fleet
from fleet.release import model_artifacts
from fleet.render import K8S_VERSION, render_env
from tests.fleet import crds
from tests.fleet.conftest import SEEDS, edit

PRODUCTION_REGISTRY = load_fleet(SEEDS).environments["production"].registry  # Pulumi.prod.yaml's

ROOT = SEEDS.parent


def _render(root, env):
    fleet = load_fleet(root)
    digests = {v: a.digest for v, a in model_artifacts(fleet, env, root.parent / "models").items()}
    return fleet, render_env(fleet, env, digests)


def _objects(rendered):
    return list(yaml.safe_load_all(rendered.content["site.yaml"]))


@pytest.mark.parametrize("env", ["qa", "production"])
def test_every_seed_site_renders_valid_objects(seeds, env):
    fleet, rendered = _render(seeds, env)
    assert sorted(r.site.name for r in rendered) == sorted(s.name for s in fleet.of(env)) and rendered
    for item in rendered:
        for obj in _objects(item):
            if obj["apiVersion"].startswith("metallb.io/"):
                crds.validate(obj, "metallb-0.14.9")
            else:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        kinds = [o["kind"] for o in item.flux_objects]
        assert kinds == ["ResourceSetInputProvider"] * 3 + ["ResourceSet", "Kustomization", "Secret", "Provider",
                                                            "Alert"]  # the Secret: the receiver's CA
        for obj in item.flux_objects:
            if obj["kind"] == "Secret":
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            else:
                crds.validate(obj)  # the template resolved by the operator: tests/fleet/test_resourceset.py


def test_the_strict_validator_rejects_an_unknown_field(seeds):
    _, rendered = _render(seeds, "qa")
    kustomization = rendered[0].flux_objects[4]
    kustomization["spec"]["healthCheck"] = []  # a typo of healthChecks
    with pytest.raises(jsonschema.ValidationError, match="healthCheck"):
        crds.validate(kustomization)


def test_site_objects_follow_their_own_repository_inside_their_windows(seeds):
    _, rendered = _render(seeds, "production")
    berlin = next(r for r in rendered if r.site.name == "plant-berlin")
    provider, _, _, resource_set, kustomization, _, notify, alert = berlin.flux_objects
    url = f"oci://{PRODUCTION_REGISTRY}/fleet/production/plant-berlin"
    assert provider["spec"]["url"] == url and provider["spec"]["secretRef"] == {"name": flux.PULL_SECRET}
    assert provider["spec"]["filter"]["includeTag"] == "^live$"
    assert provider["spec"]["schedule"] == [{"cron": "0 1 * * 1-5", "timeZone": "Europe/Berlin", "window": "3h"}]
    oci = resource_set["spec"]["resources"][0]["spec"]
    assert oci["url"] == url and oci["ref"] == {"digest": flux.DIGEST_TEMPLATE}
    assert oci["layerSelector"]["mediaType"] == flux.CONTENT_MEDIA_TYPE
    assert kustomization["spec"]["healthChecks"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "inference", "namespace": "inference"}]
    assert notify["spec"]["type"] == "generic-hmac"  # to the receiver Pulumi.prod.yaml deploys
    assert alert["spec"]["eventMetadata"] == {"site": "plant-berlin", "env": "production"}


def test_ring_site_and_kit_patches_apply_in_order(seeds):
    _, rendered = _render(seeds, "production")
    by_site = {r.site.name: {o["kind"]: o for o in _objects(r)} for r in rendered}
    lyon, berlin = by_site["store-lyon"]["Deployment"], by_site["plant-berlin"]["Deployment"]
    assert lyon["spec"]["replicas"] == 1  # ring standard says 2, the site says 1
    env = {e["name"]: e["value"] for e in berlin["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"MODEL_DIR": "/models", "LOG_LEVEL": "debug"}  # canary ring, merged by name
    container = lyon["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith("@sha256:" + "0" * 64)
    volume = lyon["spec"]["template"]["spec"]["volumes"][0]
    assert volume["image"]["reference"].startswith(f"{PRODUCTION_REGISTRY}/models/defect-detector@sha256:")
    assert by_site["store-lyon"]["IPAddressPool"]["spec"]["addresses"] == ["10.42.8.240-10.42.8.250"]
    # the site pins model 6, berlin the default 7: different digests
    assert volume["image"]["reference"] != berlin["spec"]["template"]["spec"]["volumes"][0]["image"]["reference"]


def test_bad_seeds_are_all_reported_at_once(seeds):
    site = seeds / "sites" / "plant-berlin" / "site.yaml"
    edit(site, ring="nightly", windows=[{"cron": "every night", "timeZone": "Mars/Olympus", "duration": "1m"}],
         colour="blue")
    edit(seeds / "sites" / "store-lyon" / "site.yaml", env="staging")
    with pytest.raises(FleetError) as err:
        load_fleet(seeds)
    text = str(err.value)
    for expected in ("plant-berlin/site.yaml: windows[0].cron", "windows[0].timeZone: Value error, unknown time zone",
                     "windows[0].duration: Value error, a window must last at least 4m", "colour: Extra inputs",
                     "store-lyon/site.yaml: env: 'staging' is not in fleet.yaml"):
        assert expected in text


def test_a_site_s_pool_is_checked_as_metallb_checks_it_all_errors_at_once(seeds):
    """What MetalLB's webhook would refuse (fleet releases carry the pool: tests/realapi/test_metallb.py) is bad
    input here, before anything is pushed: a bare address, a range ending before it starts, overlapping entries."""
    edit(seeds / "sites" / "plant-berlin" / "site.yaml", metallb={"addresses": ["172.20.4.200", "10.0.0.9-10.0.0.1"]})
    edit(seeds / "sites" / "store-lyon" / "site.yaml",
         metallb={"addresses": ["10.42.8.240-10.42.8.250", "10.42.8.248/29", "10.42.9.0/24"]})
    with pytest.raises(FleetError) as err:
        load_fleet(seeds)
    text = str(err.value)
    for expected in ("plant-berlin/site.yaml: metallb.addresses[0]: Value error, '172.20.4.200' is not an address "
                     "range 'a-b' or a CIDR: a single address is '172.20.4.200/32'",
                     "plant-berlin/site.yaml: metallb.addresses[1]: Value error, range '10.0.0.9-10.0.0.1' ends before",
                     "store-lyon/site.yaml: metallb: Value error, addresses[1] '10.42.8.248/29' overlaps addresses[0] "
                     "'10.42.8.240-10.42.8.250' (MetalLB refuses a pool whose ranges overlap)"):
        assert expected in text, text
    assert "10.42.9.0/24" not in text  # the separate entry is fine


def test_a_patch_of_nothing_and_an_invalid_core_object_are_errors(seeds):
    edit(seeds / "sites" / "store-lyon" / "site.yaml",
         patches=[{"kind": "Deployment", "name": "inferense", "merge": {}},
                  {"kind": "Deployment", "name": "inference", "merge": {"spec": {"replicas": "two"}}}])
    with pytest.raises(FleetError) as err:
        _render(seeds, "production")
    assert "sites/store-lyon/site.yaml: patches[0]: no Deployment named 'inferense'" in str(err.value)
    assert "Deployment/inference: spec.replicas: 'two' is not of type 'integer'" in str(err.value)


def _kit(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "common.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_kit_render_writes_each_site_and_bad_input_writes_nothing(seeds, tmp_path):
    out = tmp_path / "out"
    done = _kit("fleet.render", "--env", "production", "--root", str(seeds), "--models", str(seeds.parent / "models"),
                "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["plant-berlin", "store-lyon"]
    flux_docs = list(yaml.safe_load_all((out / "plant-berlin" / "flux.yaml").read_text()))
    assert [d["kind"] for d in flux_docs][0] == "ResourceSetInputProvider"
    before = (out / "store-lyon" / "content" / "site.yaml").read_bytes()
    edit(seeds / "sites" / "store-lyon" / "site.yaml", metallb={"addresses": []})
    failed = _kit("fleet.render", "--env", "production", "--root", str(seeds), "--models",
                  str(seeds.parent / "models"), "--out", str(out))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "store-lyon/site.yaml: metallb.addresses: List should have at least 1 item" in failed.stderr
    assert (out / "store-lyon" / "content" / "site.yaml").read_bytes() == before


def test_kit_render_without_model_files_is_bad_input(seeds, tmp_path):
    failed = _kit("fleet.render", "--env", "qa", "--root", str(seeds), "--models", str(tmp_path / "none"))
    assert failed.returncode == 2 and "no model files for defect-detector version 7" in failed.stderr


def test_the_health_check_timeout_covers_the_model_pull_over_the_sites_link(seeds):
    edit(seeds / "sites" / "store-lyon" / "site.yaml", linkMbps=2)
    folder = seeds.parent / "models" / "defect-detector" / "6"
    (folder / "model.onnx").write_bytes(random.Random(6).randbytes(3_000_000))  # 3 MB that gzip cannot shrink
    fleet = load_fleet(seeds)
    models = model_artifacts(fleet, "production", seeds.parent / "models")
    size = sum(len(layer.data) for layer in models["6"].layers)
    assert size > 3_000_000
    rendered = {r.site.name: r for r in render_env(fleet, "production", {v: a.digest for v, a in models.items()},
                                                   {v: sum(len(x.data) for x in a.layers) for v, a in models.items()})}
    lyon = rendered["store-lyon"].flux_objects[4]
    assert lyon["spec"]["timeout"] == f"{300 + -(-2 * size * 8 // 2_000_000)}s"  # 5m + twice 12 s at 2 Mbit/s
    crds.validate(lyon)
    assert rendered["plant-berlin"].flux_objects[4]["spec"]["timeout"] == "5m"  # no link given
    edit(seeds / "sites" / "store-lyon" / "site.yaml", linkMbps=0)
    with pytest.raises(FleetError, match="store-lyon/site.yaml: linkMbps: Input should be greater than 0"):
        load_fleet(seeds)
