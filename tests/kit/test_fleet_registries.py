"""A fleet environment's registry is its stack's registryLoginServer, never a second literal that could disagree;
fleet.render runs offline (no network at all) with the small sample model the kit makes."""
import json
import shutil
import subprocess

import pytest
import yaml

from fleet.config import FleetError, load_fleet
from infra.stack.stack_config import ROOT
from tests.kit.helpers import kit
from tests.kit.test_duplicate_keys import refused, seeds


def fleet_stacks() -> dict[str, str]:
    return {env: spec["stack"] for env, spec in yaml.safe_load((ROOT / "fleet" / "fleet.yaml").read_text())
            ["environments"].items()}


@pytest.mark.parametrize("env", sorted(fleet_stacks()))
def test_the_registry_is_the_stacks_planned_registry_login_server(env, tmp_path):
    stack = fleet_stacks()[env]
    done = kit("plan", "--env", stack, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    outputs = json.loads((tmp_path / stack / "plan.json").read_text())["outputs"]
    assert load_fleet().environments[env].registry == outputs["registryLoginServer"]


def test_the_registry_follows_the_stack_file(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    document["config"]["mlops-edge-kit:names"] = {"registry": "crContosoProd"}
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump(document))
    shutil.copy(ROOT / "Pulumi.qa.yaml", project)
    assert load_fleet(project_dir=project).environments["production"].registry == "crcontosoprod.azurecr.io"


def environment(tmp_path, env: str, **changes):
    root = seeds(tmp_path)
    data = yaml.safe_load((root / "fleet.yaml").read_text())
    data["environments"][env].update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data["environments"][env][key]
    (root / "fleet.yaml").write_text(yaml.safe_dump(data))
    return root


@pytest.mark.parametrize("changes, problem", [
    ({"registry": "crmlopsprod.azurecr.io"}, "environments.production: Value error, give stack (the Pulumi stack "
                                             "whose registry this environment uses) or registry"),
    ({"stack": None, "registry": "crmlopsprod.azurecr.io"},
     "environments.production: Value error, registry: crmlopsprod.azurecr.io is an Azure registry: name the stack"),
    ({"stack": None}, "environments.production: Value error, give stack"),
    ({"insecure": True}, "insecure (plain HTTP) is only for a registry given by address"),
    ({"stack": "prd"}, f"fleet.yaml: environments.production.stack: 'prd': no {ROOT / 'Pulumi.prd.yaml'} "
                       "(stacks: dev, prod, qa, uat)"),
])
def test_a_registry_that_could_disagree_with_its_stack_is_refused(tmp_path, changes, problem):
    root = environment(tmp_path, "production", **changes)
    stderr = refused("fleet.render", "--env", "production", "--root", str(root), "--out", str(tmp_path / "out"))
    assert problem in stderr, stderr
    assert not (tmp_path / "out").exists()


def test_a_stack_file_that_is_not_valid_is_named(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.prod.yaml").write_text("config:\n  mlops-edge-kit:namePrefx: mlk\n")
    shutil.copy(ROOT / "Pulumi.qa.yaml", project)
    with pytest.raises(FleetError) as caught:
        load_fleet(project_dir=project)
    assert "fleet.yaml: environments.production.stack: 'prod': the stack file is not valid:" in str(caught.value)
    assert "Pulumi.prod.yaml: config.mlops-edge-kit:namePrefx: unknown key (did you mean 'namePrefix'?)" in \
        str(caught.value)


def test_a_registry_by_address_is_kept_for_a_lab_registry(tmp_path):
    root = environment(tmp_path, "qa", stack=None, registry="127.0.0.1:5000", insecure=True,
                       receiver={"address": "https://127.0.0.1:8443"})  # no stack deploys its receiver either
    assert load_fleet(root).environments["qa"].registry == "127.0.0.1:5000"


def test_render_runs_offline_with_the_sample_model(tmp_path):
    """In a network namespace of its own (no interface but a down loopback): nothing can be fetched."""
    models, out = tmp_path / "models", tmp_path / "rendered"
    missing = kit("fleet.render", "--env", "production", "--models", str(models), "--out", str(out))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"./kit fleet.sample-model --env production --models {models}" in " ".join(missing.stderr.split())
    made = subprocess.run(["unshare", "--net", str(ROOT / "kit"), "fleet.sample-model", "--env", "production",
                           "--models", str(models)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert made.returncode == 0, made.stderr
    assert {p.name for p in (models / "defect-detector").iterdir()} == {"6", "7"}  # what the sites pin
    rendered = subprocess.run(["unshare", "--net", str(ROOT / "kit"), "fleet.render", "--env", "production",
                               "--models", str(models), "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                              timeout=300)
    assert rendered.returncode == 0, rendered.stderr
    registry = load_fleet().environments["production"].registry
    flux = [d for d in yaml.safe_load_all((out / "plant-berlin" / "flux.yaml").read_text()) if d]
    assert {d["spec"]["url"] for d in flux if d["kind"] == "OCIRepository" or "url" in d.get("spec", {})} == \
        {f"oci://{registry}/fleet/production/plant-berlin"}
    content = [d for d in yaml.safe_load_all((out / "store-lyon" / "content" / "site.yaml").read_text()) if d]
    volume = next(d for d in content if d["kind"] == "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    assert volume["image"]["reference"].startswith(f"{registry}/models/defect-detector@sha256:")


def test_the_sample_never_replaces_real_model_files(tmp_path):
    real = tmp_path / "models" / "defect-detector" / "7"
    real.mkdir(parents=True)
    (real / "model.onnx").write_bytes(b"trained weights")
    done = kit("fleet.sample-model", "--env", "production", "--models", str(tmp_path / "models"))
    assert done.returncode == 0, done.stderr
    assert f"kept (already holds model files): {real}" in done.stdout
    assert [p.name for p in real.iterdir()] == ["model.onnx"]
    sample = tmp_path / "models" / "defect-detector" / "6"
    assert sorted(p.name for p in sample.iterdir()) == ["SAMPLE.txt", "labels.txt", "model.bin"]
