"""Issue 8.2: AzureML attach deploys as Microsoft documents it (local accounts, AKS identity form, TLS secret)."""
import copy

import pytest

from infra.offline import policies
from infra.offline.plan import PlanError, record_env
from tests.infra.conftest import ENVS, expect_problems

CLUSTER = "azure-native:containerservice:ManagedCluster"
EXTENSION = "azure-native:kubernetesconfiguration:Extension"
TLS = {"sslCname": "ml.dev.example.com", "sslSecret": "ml-tls"}


@pytest.mark.parametrize("env", ENVS)
def test_an_attached_cluster_keeps_local_accounts_and_the_plan_says_why(recordings, env):
    rec = recordings[env]
    assert rec.one(CLUSTER).inputs["disableLocalAccounts"] is False
    assert any("keeps local accounts on because ml.attachAks is on" in note for note in rec.notes)


def test_a_detached_cluster_disables_local_accounts(stack_root, tmp_path):
    rec = record_env(stack_root(lambda c: c.update({"mlops-edge-kit:ml": {"attachAks": False}})), root=tmp_path)
    assert rec.one(CLUSTER).inputs["disableLocalAccounts"] is True
    assert not any("local accounts on" in note for note in rec.notes)


def test_asking_for_both_fails_validation_naming_file_and_key(stack_root, tmp_path):
    env = stack_root(lambda c: c["mlops-edge-kit:cluster"].update({"disableLocalAccounts": True}))
    with pytest.raises(PlanError) as err:
        record_env(env, root=tmp_path)
    expect_problems(err.value.problems, r"config\.mlops-edge-kit:cluster\.disableLocalAccounts: Microsoft documents "
                                        r"that the AzureML extension does not support")


@pytest.mark.parametrize("env", ENVS)
def test_the_extension_takes_the_aks_identity_form(recordings, env):
    inputs = recordings[env].one(EXTENSION).inputs
    assert inputs["aksAssignedIdentity"] == {"type": "SystemAssigned"}
    assert "identity" not in inputs  # the Arc (connectedClusters) form


def test_inference_tls_secret_is_created_before_the_extension(stack_root, tmp_path):
    rec = record_env(stack_root(lambda c: c.update({"mlops-edge-kit:ml": {"inferenceTls": TLS}})), root=tmp_path)
    (secret,) = [s for s in rec.of_type("kubernetes:core/v1:Secret") if s.inputs["metadata"]["name"] == "ml-tls"]
    assert secret.inputs["metadata"]["namespace"] == "azureml"
    assert secret.inputs["data"] == {"cert.pem": "[secret]", "key.pem": "[secret]"}
    assert secret.urn in rec.one(EXTENSION).dependencies
    provider = next(p for p in rec.of_type("pulumi:providers:kubernetes") if p.urn == secret.provider)
    assert any(r.name == "cluster-admins-ready" and r.urn in provider.dependencies for r in rec.resources)
    for key in ("inferenceTlsCert", "inferenceTlsKey"):
        assert any(f"pulumi config set --secret {key} " in note for note in rec.notes), key


def test_the_plan_fails_when_the_tls_secret_is_missing(stack_root, tmp_path):
    rec = record_env(stack_root(lambda c: c.update({"mlops-edge-kit:ml": {"inferenceTls": TLS}})), root=tmp_path)
    broken = copy.deepcopy(rec)
    broken.resources = [r for r in broken.resources if r.type != "kubernetes:core/v1:Secret"
                        or r.inputs["metadata"]["name"] != "ml-tls"]
    assert policies.violations(rec, protected=False) == []
    assert any("sslSecret 'ml-tls' is not a Secret created in namespace 'azureml'" in p
               for p in policies.violations(broken, protected=False))
