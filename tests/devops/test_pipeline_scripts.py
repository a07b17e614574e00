"""The shell scripts the pipeline templates run, executed for real against a stand-in kubectl."""
import json
import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.devops.devops_plan import ROOT

SCRIPTS = ROOT / "pipelines" / "scripts"
MANIFESTS = ROOT / "pipelines" / "manifests"
IMAGE = "mlkqaregistry.azurecr.io/ai-app:3f9c2b1"
DIGEST = "sha256:" + "ab" * 32


def run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPTS / script), *args], env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("version", ["1.4.2", "3", "2.0", "1.4.2-rc.1", "1.4.2+build.7", DIGEST])
def test_pinned_model_versions_pass(version):
    result = run("check-model-version.sh", {"MODEL_VERSION": version})
    assert result.returncode == 0, result.stderr
    assert f"model version {version} is pinned" in result.stdout


@pytest.mark.parametrize("version, reason", [
    ("latest", "moving alias"), ("Latest", "moving alias"), ("stable", "moving alias"), ("", "is empty"),
    ("1.*", "not a pinned version"), ("^1.2", "not a pinned version"), ("sha256:abc", "not a pinned version"),
    ("1.4.2\nlatest", "spans several lines"), ("$(id)", "not a pinned version")])
def test_moving_or_malformed_model_versions_fail(version, reason):
    result = run("check-model-version.sh", {"MODEL_VERSION": version})
    assert result.returncode == 1
    assert "##vso[task.logissue type=error]" in result.stderr and reason in result.stderr


def test_a_crafted_version_cannot_forge_a_logging_command():
    result = run("check-model-version.sh", {"MODEL_VERSION": "1 ##vso[task.setvariable variable=x]y"})
    assert result.returncode == 1
    assert result.stderr.count("##vso[") == 1 and "##vso[task.setvariable" not in result.stderr


def test_rendered_manifests_are_valid_and_carry_image_and_model(tmp_path):
    env = {"APP": "ai-app", "IMAGE": IMAGE, "MODEL_VERSION": "1.4.2"}
    files = [str(MANIFESTS / "app.yaml"), str(MANIFESTS / "edge-service.yaml")]
    result = run("render-manifests.sh", env, str(tmp_path), *files)
    assert result.returncode == 0, result.stderr
    objects = [o for f in ("app.yaml", "edge-service.yaml") for o in yaml.safe_load_all((tmp_path / f).read_text())]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.31", strict=True)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE and {"name": "MODEL_VERSION", "value": "1.4.2"} in container["env"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    services = {o["metadata"]["name"]: o["spec"]["type"] for o in objects if o["kind"] == "Service"}
    assert services == {"ai-app": "ClusterIP", "ai-app-lb": "LoadBalancer"}
    assert "__" not in (tmp_path / "app.yaml").read_text()


@pytest.mark.parametrize("field, value", [("IMAGE", "x|sed"), ("APP", "a b"), ("MODEL_VERSION", "1;rm")])
def test_rendering_refuses_values_that_would_break_out(tmp_path, field, value):
    env = {"APP": "ai-app", "IMAGE": IMAGE, "MODEL_VERSION": "1.4.2", field: value}
    result = run("render-manifests.sh", env, str(tmp_path / "out"), str(MANIFESTS / "app.yaml"))
    assert result.returncode == 1 and "refusing to render" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture
def kubectl(tmp_path: Path):
    """A PATH whose kubectl is the stand-in; returns (env, the calls it received)."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir(), state.mkdir()
    (bin_dir / "kubectl").symlink_to(Path(__file__).with_name("fake_kubectl.py"))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_KUBECTL_DIR": str(state), "APP": "ai-app",
           "NAMESPACE": "ml-apps", "IMAGE": IMAGE, "MODEL_VERSION": "1.4.2"}

    def calls() -> list[list[str]]:
        path = state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return env, calls, state


def run_with(env: dict[str, str], script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPTS / script), *args], env=env, capture_output=True, text=True, timeout=60)


def test_smoke_test_passes_when_the_pinned_model_is_served(kubectl):
    env, calls, _ = kubectl
    result = run_with({**env, "FAKE_KUBECTL_HEALTHZ": '{"status": "ok", "modelVersion": "1.4.2"}'}, "smoke-test.sh")
    assert result.returncode == 0, result.stderr
    assert calls() == [["get", "--raw", "/api/v1/namespaces/ml-apps/services/http:ai-app:http/proxy/healthz"]]


@pytest.mark.parametrize("answer", ['{"modelVersion": "1.4.1"}', '{"status": "ok"}', '{"modelVersion": "latest"}'])
def test_smoke_test_fails_on_another_model(kubectl, answer):
    env, _, _ = kubectl
    result = run_with({**env, "FAKE_KUBECTL_HEALTHZ": answer}, "smoke-test.sh")
    assert result.returncode == 1 and "expected 1.4.2" in result.stderr


def test_deploy_applies_waits_and_publishes_the_metallb_address(kubectl):
    env, calls, state = kubectl
    result = run_with({**env, "LOAD_BALANCER_SERVICE": "ai-app-lb", "FAKE_KUBECTL_ADDRESS": "192.168.50.200"},
                      "deploy.sh", str(MANIFESTS / "app.yaml"), str(MANIFESTS / "edge-service.yaml"))
    assert result.returncode == 0, result.stderr
    assert "##vso[task.setvariable variable=serviceAddress]192.168.50.200" in result.stdout
    made = calls()
    assert made[0][:3] == ["apply", "--namespace", "ml-apps"]
    assert made[1] == ["rollout", "status", "--namespace", "ml-apps", "deployment/ai-app", "--timeout", "600s"]
    assert made[2][:4] == ["get", "service", "--namespace", "ml-apps"] and "ai-app-lb" in made[2]
    assert IMAGE in (state / "applied-app.yaml").read_text() and (state / "applied-edge-service.yaml").exists()


def test_deploy_fails_when_metallb_gives_no_address(kubectl):
    env, calls, _ = kubectl
    result = run_with({**env, "LOAD_BALANCER_SERVICE": "ai-app-lb", "ADDRESS_TIMEOUT": "0"},
                      "deploy.sh", str(MANIFESTS / "app.yaml"), str(MANIFESTS / "edge-service.yaml"))
    assert result.returncode == 1 and "MetalLB assigned no address" in result.stderr
    assert [c[0] for c in calls()] == ["apply", "rollout", "get"]


def test_deploy_stops_when_the_rollout_fails(kubectl):
    env, calls, _ = kubectl
    result = run_with({**env, "FAKE_KUBECTL_ROLLOUT_EXIT": "1"}, "deploy.sh", str(MANIFESTS / "app.yaml"))
    assert result.returncode == 1
    assert [c[0] for c in calls()] == ["apply", "rollout"]
