"""Issue 8.1: the deployer and the admin groups may use the Kubernetes API, and Kubernetes waits for that grant."""
import base64
import copy
import socket
import time

import pytest
import requests

from azure.core.credentials import AccessToken

from infra.access import azure_token, kube_ready
from infra.access.roles import AKS_RBAC_CLUSTER_ADMIN
from infra.offline import policies
from infra.access.principal import principal_type
from infra.offline.mocks import AzureMocks, access_token, kubeconfig
from infra.offline.plan import PlanError, record_env
from infra.offline.runtime import Recording
from infra.offline.ids import stable_uuid
from tests.infra.conftest import ENVS

ROLE = "azure-native:authorization:RoleAssignment"
GROUP = "5d3c6a1e-2f4b-4c8d-9e0f-1a2b3c4d5e6f"


def grants(rec: Recording) -> dict[str, dict]:
    return {a.name: a.inputs for a in rec.of_type(ROLE) if a.inputs["roleDefinitionId"].endswith(AKS_RBAC_CLUSTER_ADMIN)}


@pytest.mark.parametrize("env", ENVS)
def test_the_deployer_holds_aks_rbac_cluster_admin_on_the_cluster(recordings, env):
    rec = recordings[env]
    cluster = rec.one("azure-native:containerservice:ManagedCluster")
    (deployer,) = grants(rec).values()
    assert deployer["principalId"] == stable_uuid("object")  # the client config's objectId
    assert deployer["principalType"] == "User"
    assert deployer["scope"].endswith(f"/managedClusters/{cluster.inputs['resourceName']}")


@pytest.mark.parametrize("env", ENVS)
def test_every_kubernetes_provider_for_aks_waits_for_the_grant(recordings, env):
    rec = recordings[env]
    by_name = {r.name: r for r in rec.resources}
    ready = by_name["cluster-admins-ready"]
    assert by_name["cluster-admins-deployer"].urn in ready.dependencies
    aks_providers = [p for p in rec.of_type("pulumi:providers:kubernetes") if p.name.startswith("aks-")]
    assert {p.name for p in aks_providers} >= {"aks-agents-k8s"}
    for provider in aks_providers:
        assert ready.urn in provider.dependencies, provider.name
    assert rec.outputs["kubeconfig"] == "[secret]"


def test_admin_groups_and_a_service_principal_deployer(stack_root, tmp_path, monkeypatch):
    """Issue 20.1: a pipeline's service principal runs `up` (its token says idtyp app): no setting names it."""
    monkeypatch.setattr(AzureMocks, "token_claims", {"oid": stable_uuid("object"), "idtyp": "app", "roles": []})

    def edit(config):
        config["mlops-edge-kit:cluster"] |= {"adminGroupObjectIds": [GROUP]}
    rec = record_env(stack_root(edit), root=tmp_path)
    found = grants(rec)
    assert found[f"cluster-admins-group-{GROUP}"]["principalType"] == "Group"
    assert found[f"cluster-admins-group-{GROUP}"]["principalId"] == GROUP
    assert found["cluster-admins-deployer"]["principalType"] == "ServicePrincipal"
    ready = next(r for r in rec.resources if r.name == "cluster-admins-ready")
    assert {r.urn for r in rec.of_type(ROLE) if r.name.startswith("cluster-admins-")} <= set(ready.dependencies)


def test_the_plan_fails_without_the_grant_or_without_the_wait(recordings):
    rec = copy.deepcopy(recordings["prod"])
    for resource in rec.of_type(ROLE):
        if resource.name == "cluster-admins-deployer":
            resource.inputs["roleDefinitionId"] = resource.inputs["roleDefinitionId"].replace(AKS_RBAC_CLUSTER_ADMIN, "x")
    problems = "\n".join(policies.violations(rec, protected=True))
    assert "nobody may use the Kubernetes API" in problems
    rec = copy.deepcopy(recordings["prod"])
    ready = next(r for r in rec.resources if r.name == "cluster-admins-ready")
    for provider in rec.of_type("pulumi:providers:kubernetes"):
        provider.dependencies = [d for d in provider.dependencies if d != ready.urn]
    problems = "\n".join(policies.violations(rec, protected=True))
    assert "pulumi:providers:kubernetes aks-agents-k8s: does not wait until the Kubernetes API allows" in problems


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_wait_polls_until_allowed():
    answers = iter([(False, "HTTP 403"), (False, "no RBAC policy matched"), (True, "")])
    clock = FakeClock()
    assert kube_ready.wait_until(lambda: next(answers), endpoint="https://aks.example:443", deadline_s=60, poll_s=10,
                                 clock=clock, sleep=clock.sleep) == 3
    assert clock.now == 20


def test_the_wait_is_bounded_and_says_what_to_check():
    clock = FakeClock()
    with pytest.raises(kube_ready.AccessNotGranted) as err:
        kube_ready.wait_until(lambda: (False, "HTTP 403"), endpoint="https://aks.example:443", deadline_s=60,
                              poll_s=10, clock=clock, sleep=clock.sleep)
    assert clock.now <= 60
    assert "HTTP 403" in str(err.value) and "Azure Kubernetes Service RBAC Cluster Admin" in str(err.value)
    assert "https://aks.example:443" in str(err.value)


def test_the_check_asks_the_api_server_as_the_deployer_with_a_token_for_the_clusters_server_id(monkeypatch):
    """Issue 20.3: the token comes from azure-identity's chain (a fake credential here), not kubelogin or az."""
    calls, credential = {}, FakeCredential("t0ken")

    class Response:
        status_code = 201

        def raise_for_status(self):
            pass

        def json(self):
            return {"status": {"allowed": True}}

    def post(url, json, headers, verify, timeout):
        calls.update(url=url, body=json, auth=headers["Authorization"], ca=open(verify, "rb").read())
        return Response()

    monkeypatch.setattr(azure_token, "credential", lambda: credential)
    monkeypatch.setattr(kube_ready.requests, "post", post)
    monkeypatch.setenv("PATH", "/nonexistent")  # neither kubelogin nor az could run
    check = kube_ready.access_check(kubeconfig("aks-mlk-dev", "aks.example"))
    assert check() == (True, "allowed")
    assert credential.scopes == ["6dae42f8-4368-4678-94ff-3960e28e3630/.default"]  # AKS's Entra ID server app
    assert calls["url"] == "https://aks.example:443/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    assert calls["body"]["kind"] == "SelfSubjectAccessReview" and calls["auth"] == "Bearer t0ken"
    assert calls["ca"] == base64.b64decode(base64.b64encode(b"mock-ca"))


def test_no_credential_is_reported_without_any_token(monkeypatch):
    from azure.core.exceptions import ClientAuthenticationError

    class Failing:
        def get_token(self, *scopes, **kwargs):
            raise ClientAuthenticationError("DefaultAzureCredential failed: secret-looking detail")
    monkeypatch.setattr(azure_token, "credential", lambda: Failing())
    with pytest.raises(azure_token.AzureLoginError) as err:
        kube_ready.access_check(kubeconfig("aks-mlk-dev", "aks.example"))()
    assert "6dae42f8-4368-4678-94ff-3960e28e3630/.default" in str(err.value) and "az login" in str(err.value)
    assert "secret-looking" not in str(err.value)


def test_the_wait_runs_again_when_the_kubeconfig_changes(monkeypatch):
    monkeypatch.setattr(kube_ready, "wait_for_access", lambda kubeconfig: 1)
    provider = kube_ready.AccessReadyProvider()
    olds = {"cluster_id": "/c", "grants": ["/g"], "kubeconfig": "a"}
    news = {**olds, "kubeconfig": "b"}
    diff = provider.diff("/c", olds, news)
    assert diff.changes and not diff.replaces
    assert provider.update("/c", olds, news).outs == {**news, "attempts": 1}
    assert provider.diff("/c", olds, {**olds, "grants": ["/g", "/h"]}).replaces == ["grants"]


class FakeCredential:
    """An azure-identity credential that hands out one token and records the scopes asked for."""

    def __init__(self, token: str):
        self.token, self.scopes = token, []

    def get_token(self, *scopes, **kwargs):
        self.scopes += scopes
        return AccessToken(self.token, int(time.time()) + 3600)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("server", ["https://127.0.0.1:{port}", "https://aks-mlk-eph.invalid:443"])
def test_a_refused_or_unresolvable_api_server_is_retried_not_raised(monkeypatch, server):
    """Issue 20.1: connection errors (refused, name not resolved) are a 'not yet', polled like a 403."""
    monkeypatch.setattr(azure_token, "credential", lambda: FakeCredential("t0ken"))
    server = server.format(port=_free_port())
    config = kubeconfig("aks-mlk-eph", "x").replace("https://x:443", server)
    allowed, reason = kube_ready.access_check(config)()
    assert not allowed and reason.startswith(kube_ready.UNREACHABLE), reason
    assert "t0ken" not in reason


def test_tls_handshake_timeouts_are_retried_until_the_api_server_answers(monkeypatch):
    answers = iter([requests.exceptions.SSLError("handshake"), requests.exceptions.ConnectTimeout("slow"),
                    requests.exceptions.ConnectionError("reset")])

    class Allowed:
        status_code = 201

        def raise_for_status(self):
            pass

        def json(self):
            return {"status": {"allowed": True}}

    def post(url, **kwargs):
        answer = next(answers, None)
        if answer is None:
            return Allowed()
        raise answer
    monkeypatch.setattr(azure_token, "credential", lambda: FakeCredential("t0ken"))
    monkeypatch.setattr(kube_ready.requests, "post", post)
    check = kube_ready.access_check(kubeconfig("aks-mlk-eph", "aks.example"))
    reasons = [check()[1] for _ in range(3)]
    assert reasons == ["unreachable: TLS handshake failed", "unreachable: timed out",
                       "unreachable: no connection (name not resolved, refused or reset)"]
    clock = FakeClock()
    assert kube_ready.wait_until(check, endpoint="https://aks.example:443", deadline_s=60, poll_s=10, clock=clock,
                                 sleep=clock.sleep) == 1


def test_an_api_server_unreachable_to_the_deadline_names_the_endpoint_and_the_network_path():
    clock = FakeClock()
    with pytest.raises(kube_ready.AccessNotGranted) as err:
        kube_ready.wait_until(lambda: (False, kube_ready.unreachable(requests.exceptions.ConnectTimeout())),
                              endpoint="https://aks-mlk-eph.hcp.westeurope.azmk8s.io:443", deadline_s=60, poll_s=10,
                              clock=clock, sleep=clock.sleep)
    message = str(err.value)
    assert "https://aks-mlk-eph.hcp.westeurope.azmk8s.io:443 was still unreachable after 60s" in message
    assert "VNET peering" in message and "RBAC Cluster Admin" not in message


SP_OIDC = {"ARM_CLIENT_ID": "c", "ARM_TENANT_ID": "t", "ARM_SUBSCRIPTION_ID": "s", "ARM_USE_OIDC": "true"}


@pytest.mark.parametrize("claims, environ, expected", [
    ({"idtyp": "app"}, {}, "ServicePrincipal"),             # a service principal or managed identity's token
    ({"idtyp": "user", "scp": "user_impersonation"}, SP_OIDC, "User"),  # the token wins over the environment
    ({"scp": "user_impersonation"}, {}, "User"),            # no idtyp: a delegated token is a person's
    ({"roles": []}, {}, "ServicePrincipal"),                # no idtyp, no scp: an application's
    ({"scp": "x"}, SP_OIDC, "ServicePrincipal"),            # no idtyp: the provider's OIDC login is an app's
    ({"scp": "x"}, {**SP_OIDC, "ARM_USE_OIDC": "false", "ARM_CLIENT_SECRET": "s3cret"}, "ServicePrincipal"),
])
def test_the_deployer_principal_type_comes_from_its_login(claims, environ, expected):
    assert principal_type(access_token(claims), environ) == expected


def test_a_stack_file_can_no_longer_set_the_deployer_type(stack_root, tmp_path):
    def edit(config):
        config["mlops-edge-kit:cluster"]["deployerPrincipalType"] = "User"
    with pytest.raises(PlanError) as err:
        record_env(stack_root(edit), root=tmp_path)
    assert any("deployerPrincipalType" in p and "unknown key" in p for p in err.value.problems)
