"""Issue 8.5: every registry consumer has a network path and a least-privilege credential; the plan names any without."""
import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.core.credentials import AccessToken

from infra.access import azure_token
from infra.components import edge_registry
from infra.offline import policies
from infra.offline.plan import PlanError, record_env
from infra.stack.stack_config import load_stack, project_values, read_stack_file, stack_file
from tests.infra.conftest import expect_problems

EDGE_ENVS = ["qa", "uat", "prod"]
REGISTRY = "azure-native:containerregistry:Registry"


def registry_settings(env: str):
    return load_stack(project_values(read_stack_file(stack_file(env))), source=f"Pulumi.{env}.yaml", env=env,
                      organization="organization").settings.registry


@pytest.mark.parametrize("env", EDGE_ENVS)
def test_the_public_endpoint_admits_only_the_sites_and_the_private_endpoint_stays(recordings, env):
    rec = recordings[env]
    registry = rec.one(REGISTRY).inputs
    egress = [str(ip) for site in registry_settings(env).edge_sites for ip in site.egress_ips]
    assert registry["publicNetworkAccess"] == "Enabled"
    assert registry["networkRuleSet"] == {"defaultAction": "Deny",
                                          "ipRules": [{"iPAddressOrRange": ip, "action": "Allow"} for ip in egress]}
    assert any(e.inputs["privateLinkServiceConnections"][0]["groupIds"] == ["registry"]
               for e in rec.of_type("azure-native:network:PrivateEndpoint"))


@pytest.mark.parametrize("env", EDGE_ENVS)
def test_each_site_has_a_token_scoped_to_its_repositories(recordings, env):
    rec = recordings[env]
    for site in registry_settings(env).edge_sites:
        (scope,) = [s for s in rec.of_type("azure-native:containerregistry:ScopeMap")
                    if s.inputs["scopeMapName"] == f"edge-{site.name}"]
        actions = set(scope.inputs["actions"])
        for repo in site.pull:
            assert {f"repositories/{repo}/content/read", f"repositories/{repo}/metadata/read"} <= actions
        writes = {a.split("/")[1] for a in actions if a.endswith("/write")}
        assert writes == set(site.push) == {"ai-app"}
        assert not any("*" in a or a.endswith("/delete") for a in actions)
        (token,) = [t for t in rec.of_type("azure-native:containerregistry:Token")
                    if t.inputs["tokenName"] == f"edge-{site.name}"]
        assert token.inputs["scopeMapId"].endswith(f"/scopeMaps/edge-{site.name}") and token.inputs["status"] == "enabled"
        password = next(r for r in rec.resources if r.name == f"registry-edge-{site.name}-password")
        assert token.urn in password.dependencies
    masked = {"server": "[secret]", "username": "[secret]", "password": "[secret]"}  # secret, shape kept
    assert rec.outputs["edgeRegistryCredentials"] == {site.name: masked for site in registry_settings(env).edge_sites}


def test_a_site_without_registry_access_or_push_is_bad_settings(stack_root, tmp_path):
    def no_registry(config):
        base = yaml_of("qa")
        config.update({k: v for k, v in base.items() if k in ("mlops-edge-kit:agents", "mlops-edge-kit:devops")})
    with pytest.raises(PlanError) as err:
        record_env(stack_root(no_registry), root=tmp_path)
    expect_problems(err.value.problems, r"config\.mlops-edge-kit:registry\.edgeSites: edge site 'qa' has no way to "
                                        r"the registry")

    def no_push(config):
        no_registry(config)
        config["mlops-edge-kit:registry"] = {"edgeSites": [{"name": "qa", "egressIps": ["198.51.100.20/32"],
                                                            "pull": ["ai-app"]}]}
    with pytest.raises(PlanError) as err:
        record_env(stack_root(no_push), root=tmp_path)
    expect_problems(err.value.problems, r"registry\.edgeSites\[0\]\.push: edge site 'qa' runs agent pools")


def yaml_of(env: str) -> dict:
    return read_stack_file(stack_file(env))


@pytest.mark.parametrize("break_it,expected", [
    (lambda rec: rec.one(REGISTRY).inputs.update(publicNetworkAccess="Disabled"), "edge site qa has no network path"),
    (lambda rec: rec.resources.remove(next(r for r in rec.resources if r.inputs.get("tokenName") == "edge-qa")),
     "edge site qa has no credential"),
    (lambda rec: next(s for s in rec.of_type("azure-native:containerregistry:ScopeMap")
                      if s.inputs["scopeMapName"] == "edge-qa").inputs.update(
        actions=["repositories/ai-app/content/read"]), "edge site qa's agent pools \\(push\\) has no credential"),
    (lambda rec: rec.resources.remove(next(r for r in rec.resources if r.name == "access-kubelet-acrpull")),
     "the AKS kubelet has no credential"),
    (lambda rec: rec.one("azure-native:machinelearningservices:Workspace").inputs.pop("imageBuildCompute"),
     "AzureML \\(image builds\\) has no network path"),
    (lambda rec: rec.resources.remove(next(r for r in rec.resources if r.name == "access-image-build-acrpush")),
     "AzureML \\(image builds\\) has no credential"),
    (lambda rec: rec.resources.remove(next(r for r in rec.resources if r.name.endswith("-acr-push"))),
     "the AKS agent pools \\(push\\) has no credential"),
])
def test_the_plan_names_each_consumer_without_a_path_or_credential(recordings, break_it, expected):
    import re
    rec = copy.deepcopy(recordings["qa"])
    assert policies.violations(rec, protected=False) == []
    break_it(rec)
    problems = policies.violations(rec, protected=False)
    assert any(re.search(expected, p) for p in problems), problems


def test_the_password_is_generated_through_the_long_running_arm_action(monkeypatch):
    calls = []

    class Response:
        def __init__(self, status, body=None, headers=None):
            self.status_code, self._body, self.headers = status, body, headers or {}

        def json(self):
            return self._body

    def post(url, params, json, headers, timeout):
        calls.append(("POST", url, json, headers["Authorization"]))
        return Response(202, headers={"Location": "https://management.azure.com/operations/1"})

    def get(url, headers, timeout):
        calls.append(("GET", url))
        return Response(200, {"username": "edge-qa", "passwords": [{"name": "password1", "value": "s3cret"}]})

    monkeypatch.setattr(edge_registry.requests, "post", post)
    monkeypatch.setattr(edge_registry.requests, "get", get)
    monkeypatch.setattr(edge_registry.time, "sleep", lambda s: None)
    got = edge_registry.generate_password("/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/"
                                          "registries/cr", "/tokens/edge-qa", "password1", "arm-token")
    assert got == {"username": "edge-qa", "password": "s3cret"}
    assert calls[0] == ("POST", "https://management.azure.com/subscriptions/s/resourceGroups/g/providers/"
                        "Microsoft.ContainerRegistry/registries/cr/generateCredentials",
                        {"tokenId": "/tokens/edge-qa", "name": "password1"}, "Bearer arm-token")
    assert calls[1] == ("GET", "https://management.azure.com/operations/1")


def test_a_failed_generation_says_so_without_secrets(monkeypatch):
    class Denied:
        status_code, headers = 403, {}
    monkeypatch.setattr(edge_registry.requests, "post", lambda *a, **k: Denied())
    with pytest.raises(RuntimeError) as err:
        edge_registry.generate_password("/r", "/t", "password1", "arm-token")
    assert "HTTP 403" in str(err.value) and "arm-token" not in str(err.value)


class ArmStandIn(BaseHTTPRequestHandler):
    """ARM's generateCredentials: 202 with a Location to poll, then the token's credentials (HTTP on loopback)."""

    seen: list[tuple[str, str, str | None, dict | None]] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(("POST", self.path, self.headers.get("Authorization"), body))
        self.send_response(202)
        self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/operations/op-1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        type(self).seen.append(("GET", self.path, self.headers.get("Authorization"), None))
        answer = json.dumps({"username": "edge-qa", "passwords": [{"name": "password1", "value": "s3cret"},
                                                                  {"name": "password2", "value": "other"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


class FakeCredential:
    def __init__(self):
        self.scopes = []

    def get_token(self, *scopes, **kwargs):
        self.scopes += scopes
        return AccessToken("arm-t0ken", int(time.time()) + 3600)


def test_the_password_resource_signs_in_through_azure_identity_and_needs_no_az(monkeypatch):
    """Issue 20.3: the token comes from azure-identity's chain (a fake credential), the call is plain HTTPS to ARM
    (a loopback stand-in here), and no `az` is on PATH."""
    ArmStandIn.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ArmStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    credential = FakeCredential()
    monkeypatch.setattr(azure_token, "ARM", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(azure_token, "credential", lambda: credential)
    monkeypatch.setattr(edge_registry.time, "sleep", lambda s: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    registry = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/cr"
    try:
        created = edge_registry.TokenPasswordProvider().create(
            {"registry_id": registry, "token_id": f"{registry}/tokens/edge-qa", "password_name": "password1"})
    finally:
        server.shutdown()
    assert (created.outs["username"], created.outs["password"]) == ("edge-qa", "s3cret")
    assert credential.scopes == ["https://management.azure.com/.default"]
    post, get = ArmStandIn.seen
    assert post == ("POST", f"{registry}/generateCredentials?api-version={edge_registry.API_VERSION}",
                    "Bearer arm-t0ken", {"tokenId": f"{registry}/tokens/edge-qa", "name": "password1"})
    assert get == ("GET", "/operations/op-1", "Bearer arm-t0ken", None)
