"""Issue 8.9: the stack's kubeconfig is converted per kubelogin mode, each with its own arguments."""
import pytest
import yaml

from infra.access.kubelogin import convert_kubeconfig
from infra.offline.ids import TENANT_ID
from infra.offline.mocks import kubeconfig
from infra.offline.plan import PlanError, record_env
from tests.infra import kubelogin_oracle
from tests.infra.conftest import expect_problems

SP = "0b9f3c1e-4a2d-4e8f-9c7b-6a5d4e3f2a1b"
AKS_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
AKS_CLIENT_APP = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"


def exec_of(method: str, client_id: str | None = None) -> dict:
    converted = yaml.safe_load(convert_kubeconfig(kubeconfig("aks-mlk-dev", "aks.example"), method, client_id))
    return converted["users"][0]["user"]["exec"]


def test_the_cli_login_keeps_only_the_server_id():
    assert exec_of("azurecli")["args"] == ["get-token", "--login", "azurecli", "--server-id", AKS_SERVER_ID]


def test_the_pipeline_login_writes_the_clusters_tenant_as_kubelogin_does():
    """Issue 20.2: kubelogin's converter requires and writes --tenant-id for azurepipelines (v0.2.14)."""
    assert exec_of("azurepipelines")["args"] == ["get-token", "--login", "azurepipelines", "--server-id",
                                                 AKS_SERVER_ID, "--tenant-id", TENANT_ID]


def test_a_kubeconfig_without_a_tenant_cannot_be_converted_to_the_pipeline_login():
    config = kubeconfig("aks-mlk-dev", "aks.example").replace(f" --tenant-id, {TENANT_ID},", "")
    with pytest.raises(ValueError, match="azurepipelines login needs the cluster's tenant id"):
        convert_kubeconfig(config, "azurepipelines")


def test_spn_signs_in_as_the_service_principal_of_the_clusters_tenant():
    args = exec_of("spn", SP)["args"]
    assert args == ["get-token", "--login", "spn", "--server-id", AKS_SERVER_ID, "--client-id", SP,
                    "--tenant-id", TENANT_ID, "--environment", "AzurePublicCloud"]
    assert AKS_CLIENT_APP not in args and "--client-secret" not in args


@pytest.mark.parametrize("method", ["msi", "workloadidentity"])
def test_identity_logins_name_the_identity_only_when_given(method):
    assert exec_of(method)["args"] == ["get-token", "--login", method, "--server-id", AKS_SERVER_ID]
    assert exec_of(method, SP)["args"][-2:] == ["--client-id", SP]
    assert AKS_CLIENT_APP not in exec_of(method)["args"]


def test_the_rest_of_the_kubeconfig_is_kept():
    original = yaml.safe_load(kubeconfig("aks-mlk-dev", "aks.example"))
    converted = yaml.safe_load(convert_kubeconfig(kubeconfig("aks-mlk-dev", "aks.example"), "azurecli"))
    assert converted["clusters"] == original["clusters"] and converted["contexts"] == original["contexts"]
    assert converted["users"][0]["user"]["exec"]["apiVersion"] == "client.authentication.k8s.io/v1beta1"


def test_spn_without_a_client_id_is_bad_settings(stack_root, tmp_path):
    env = stack_root(lambda c: c["mlops-edge-kit:cluster"].update({"kubelogin": {"method": "spn"}}))
    with pytest.raises(PlanError) as err:
        record_env(env, root=tmp_path)
    expect_problems(err.value.problems, r"config\.mlops-edge-kit:cluster\.kubelogin: method spn needs clientId")


def test_the_program_converts_with_the_configured_mode(stack_root, tmp_path, monkeypatch):
    from infra.components import cluster
    seen = []
    real = cluster.convert_kubeconfig
    monkeypatch.setattr(cluster, "convert_kubeconfig", lambda *a: seen.append(a[1:]) or real(*a))
    record_env(stack_root(lambda c: c["mlops-edge-kit:cluster"].update(
        {"kubelogin": {"method": "workloadidentity", "clientId": SP}})), root=tmp_path)
    assert seen == [("workloadidentity", SP)]


@pytest.mark.parametrize("method, client_id", [("azurecli", None), ("azurepipelines", None), ("spn", SP),
                                               ("msi", None), ("msi", SP), ("workloadidentity", None),
                                               ("workloadidentity", SP)])
def test_each_mode_converts_as_kubelogins_own_converter_does(method, client_id, tmp_path):
    """Issue 20.2: the kit's conversion against `kubelogin convert-kubeconfig` at the agent image's pin."""
    original = kubeconfig("aks-mlk-dev", "aks.example")
    theirs = kubelogin_oracle.convert(original, method, client_id, tmp_path)
    ours = yaml.safe_load(convert_kubeconfig(original, method, client_id))
    (their_user,), (our_user,) = theirs["users"], ours["users"]
    assert their_user["name"] == our_user["name"]
    for key in ("command", "args", "apiVersion"):  # kubelogin also adds its install hint where AKS gave none
        assert our_user["user"]["exec"][key] == their_user["user"]["exec"][key], key
    assert ours["clusters"] == theirs["clusters"] and ours["contexts"] == theirs["contexts"]
