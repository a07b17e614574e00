"""Issue 8.8 (AKS part): node upgrades wait for running agent jobs instead of failing on their PodDisruptionBudget."""
import pytest

from infra.offline.plan import PlanError, record_env
from tests.infra.conftest import ENVS, expect_problems


def job_pods_on_aks(rec) -> list[dict]:
    return [r.inputs["spec"]["jobTargetRef"]["template"]["spec"] for r in rec.resources
            if r.type == "kubernetes:keda.sh/v1alpha1:ScaledJob" and r.provider.endswith("::aks-agents-k8s")]


@pytest.mark.parametrize("env", ENVS)
def test_user_pools_drain_longer_than_an_agent_job_takes_to_end(recordings, env):
    rec = recordings[env]
    pods = job_pods_on_aks(rec)
    assert pods, "agents run on this cluster"
    longest_shutdown = max(p["terminationGracePeriodSeconds"] for p in pods)  # the job timeout plus its grace
    pdbs = [r for r in rec.resources if r.type == "kubernetes:policy/v1:PodDisruptionBudget"
            and r.provider.endswith("::aks-agents-k8s")]
    assert pdbs and all(p.inputs["spec"]["maxUnavailable"] == 0 for p in pdbs)
    for pool in rec.of_type("azure-native:containerservice:AgentPool"):
        upgrade = pool.inputs["upgradeSettings"]
        assert upgrade["maxSurge"] == "33%"
        assert longest_shutdown < upgrade["drainTimeoutInMinutes"] * 60 <= 1440 * 60, pool.name


def test_the_drain_timeout_follows_the_job_timeout(stack_root, tmp_path):
    rec = record_env(stack_root(lambda c: c["mlops-edge-kit:agents"].update({"jobTimeoutMinutes": 180})),
                     root=tmp_path)
    assert {p.inputs["upgradeSettings"]["drainTimeoutInMinutes"]
            for p in rec.of_type("azure-native:containerservice:AgentPool")} == {185}


def test_a_job_timeout_aks_cannot_drain_for_is_bad_settings(stack_root, tmp_path):
    env = stack_root(lambda c: c["mlops-edge-kit:agents"].update({"jobTimeoutMinutes": 1440}))
    with pytest.raises(PlanError) as err:
        record_env(env, root=tmp_path)
    expect_problems(err.value.problems, r"config\.mlops-edge-kit:agents\.jobTimeoutMinutes: 1440 minutes is longer "
                                        r"than AKS can wait to drain a node")
