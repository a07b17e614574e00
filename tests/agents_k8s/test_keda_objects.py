"""Every KEDA object the agents render, validated strictly against the CRDs of the pinned KEDA release."""
import pytest

from agents.settings import AgentsSettings
from tests.agents_k8s.conftest import CLIENT_ID, SETTINGS, TENANT_ID, record_agents
from tests.agents_k8s.crd_schema import UPSTREAM, problems

KEDA = f"keda-{AgentsSettings.model_fields['keda_version'].default}"


def keda_objects(plan) -> list[dict]:
    return [r.inputs for r in plan.resources if r.type.startswith("kubernetes:keda.sh/")]


def test_the_pinned_keda_release_has_its_crds_here():
    assert (UPSTREAM / KEDA / "keda.sh_scaledobjects.yaml").exists(), f"../shared/upstream/{KEDA} is missing"


def test_every_keda_object_is_valid_under_strict_field_validation(plan):
    objects = keda_objects(plan)
    assert {o["kind"] for o in objects} == {"ScaledJob", "ScaledObject", "TriggerAuthentication"}
    for obj in objects:
        assert problems(KEDA, obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"


def test_workload_identity_objects_are_valid_too():
    plan = record_agents({**SETTINGS, "edgeSites": [],
                          "auth": {"mode": "workload-identity", "clientId": CLIENT_ID, "tenantId": TENANT_ID}})
    objects = keda_objects(plan)
    assert len(objects) == 6  # two ScaledJobs, two ScaledObjects, a TriggerAuthentication per namespace
    for obj in objects:
        assert problems(KEDA, obj) == []


@pytest.mark.parametrize("mistake, where", [
    (lambda spec: spec.update(minReplicas=0), "<root>"),  # misspelt: minReplicaCount
    (lambda spec: spec["triggers"][0].update(auth="x"), "spec.triggers.0"),
    (lambda spec: spec.update(maxReplicaCount="1"), "spec.maxReplicaCount"),
])
def test_strict_validation_catches_unknown_and_mistyped_fields(plan, mistake, where):
    scaled = next(o for o in keda_objects(plan) if o["kind"] == "ScaledObject")
    broken = {**scaled, "spec": {**scaled["spec"], "triggers": [dict(t) for t in scaled["spec"]["triggers"]]}}
    mistake(broken["spec"])
    found = problems(KEDA, broken)
    assert found and any(p.startswith(where.replace("<root>", "spec")) for p in found), found


@pytest.mark.parametrize("env", ["dev", "qa", "uat", "prod"])
def test_the_shipped_agents_leave_no_pod_running_while_the_queue_is_empty(env):
    import yaml

    from infra.stack.stack_config import ROOT
    raw = yaml.safe_load((ROOT / f"Pulumi.{env}.yaml").read_text())["config"]["mlops-edge-kit:agents"]
    keys = {f"mlops-edge-kit:{site['kubeconfigSecretKey']}": "apiVersion: v1\nkind: Config\n"
            for site in raw.get("edgeSites", [])}
    plan = record_agents(raw, keys)
    objects = keda_objects(plan)
    assert objects and all(o["spec"]["minReplicaCount"] == 0 for o in objects if o["kind"] != "TriggerAuthentication")
    deployments = [r.inputs for r in plan.of_type("kubernetes:apps/v1:Deployment")]
    assert deployments and all("replicas" not in d["spec"] for d in deployments), "KEDA alone sizes the builders"
    scaled = {o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] == "ScaledObject"}
    assert scaled == {d["metadata"]["name"] for d in deployments}, "every builder is scaled by KEDA"
