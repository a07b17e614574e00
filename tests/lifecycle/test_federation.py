"""Issue 20.2: under workload identity federation a long run keeps a valid assertion: the kit asks the pipeline's
OIDC endpoint again and again (a local stand-in here) and keeps a 0600 token file every credential rereads."""
import json
import os
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from infra.lifecycle import federation, tasks
from infra.lifecycle.federation import FederationError, federated_login

ACCESS_TOKEN = "job-access-token-secret"


class OidcEndpoint(BaseHTTPRequestHandler):
    """Azure DevOps' oidctoken endpoint: POST, bearer System.AccessToken, answers {"oidcToken": ...}."""

    requests: list[dict] = []
    status = 200

    def do_POST(self):  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        type(self).requests.append({"path": url.path, "query": parse_qs(url.query),
                                    "auth": self.headers.get("Authorization")})
        body = json.dumps({"oidcToken": f"id-token-{len(type(self).requests)}"}).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    OidcEndpoint.requests, OidcEndpoint.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), OidcEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/org/project/_apis/distributedtask/hubs/build/plans/p/jobs/j/oidctoken"
    server.shutdown()


def pipeline_env(uri: str) -> dict[str, str]:
    return {"SYSTEM_OIDCREQUESTURI": uri, "SYSTEM_ACCESSTOKEN": ACCESS_TOKEN,
            "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "conn-1", "AZURESUBSCRIPTION_CLIENT_ID": "client-1",
            "AZURESUBSCRIPTION_TENANT_ID": "tenant-1", "AZURE_CLIENT_ID": "was-here"}


def wait_for(condition, what: str, bound_s: float = 20) -> None:
    """Wait for `condition` (a liveness bound, not a speed check)."""
    end = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < end, f"{what} did not happen within {bound_s}s"
        time.sleep(0.01)


def test_the_token_file_is_kept_fresh_for_every_credential_and_removed_after(endpoint):
    environ = pipeline_env(endpoint)
    with federated_login(environ, refresh_s=0.05) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.read_text() == "id-token-1"
        assert environ["AZURE_FEDERATED_TOKEN_FILE"] == str(path)
        assert (environ["AZURE_CLIENT_ID"], environ["AZURE_TENANT_ID"]) == ("client-1", "tenant-1")
        assert (environ["ARM_CLIENT_ID"], environ["ARM_TENANT_ID"]) == ("client-1", "tenant-1")
        assert environ["ARM_USE_DEFAULT_AZURE_CREDENTIAL"] == "true"
        wait_for(lambda: path.read_text() == "id-token-3", "two refreshes")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.exists() and not path.parent.exists()
    assert environ["AZURE_CLIENT_ID"] == "was-here" and "AZURE_FEDERATED_TOKEN_FILE" not in environ
    first = OidcEndpoint.requests[0]
    assert first["path"].endswith("/oidctoken") and first["auth"] == f"Bearer {ACCESS_TOKEN}"
    assert first["query"] == {"api-version": ["7.1"], "serviceConnectionId": ["conn-1"]}


def test_a_refused_request_says_what_to_check_without_the_tokens(endpoint):
    OidcEndpoint.status = 401
    environ = pipeline_env(endpoint)
    with pytest.raises(FederationError) as err:
        with federated_login(environ):
            pass
    message = str(err.value)
    assert "conn-1 (HTTP 401)" in message and "System.AccessToken" in message
    assert ACCESS_TOKEN not in message and "id-token" not in message
    assert environ["AZURE_CLIENT_ID"] == "was-here"


def test_a_failed_refresh_keeps_the_last_token_and_tries_again(endpoint, monkeypatch):
    environ = pipeline_env(endpoint)
    monkeypatch.setattr(federation, "RETRY_SECONDS", 0.05)
    with federated_login(environ, refresh_s=0.05) as path:
        OidcEndpoint.status = 500
        count = len(OidcEndpoint.requests)
        wait_for(lambda: len(OidcEndpoint.requests) >= count + 2, "retries")
        kept = path.read_text()
        assert kept.startswith("id-token-")
        OidcEndpoint.status = 200
        wait_for(lambda: path.read_text() != kept, "a fresh token after the endpoint recovers")


def test_outside_a_pipeline_nothing_changes():
    environ = {"ARM_CLIENT_ID": "x"}
    with federated_login(environ) as path:
        assert path is None and environ == {"ARM_CLIENT_ID": "x"}


def test_a_step_without_the_access_token_is_told_to_map_it():
    environ = {k: v for k, v in pipeline_env("http://127.0.0.1:1/x").items() if k != "SYSTEM_ACCESSTOKEN"}
    with pytest.raises(FederationError) as err:
        with federated_login(environ):
            pass
    assert "SYSTEM_ACCESSTOKEN: $(System.AccessToken)" in str(err.value)


def test_kit_up_in_a_pipeline_step_signs_the_engine_in_through_the_fresh_token_file_without_az(
        project, endpoint, monkeypatch):
    for name, value in {**pipeline_env(endpoint), "ARM_SUBSCRIPTION_ID": "sub-1"}.items():
        monkeypatch.setenv(name, value)
    project.az_login.unlink()  # no az login at all: the step needs none
    project.run(tasks.up, env="qa")
    logins = [r["login"] for r, argv in zip(project.records(), project.calls()) if argv[:1] == ["up"]]
    assert logins == [{"default_credential": "true", "client_id": "client-1", "federated_token": "id-token-1"}]
    assert project.az_calls() == []
    assert os.environ["AZURE_CLIENT_ID"] == "was-here" and "AZURE_FEDERATED_TOKEN_FILE" not in os.environ


def test_a_pipeline_step_without_the_subscription_or_the_access_token_is_refused_up_front(project, endpoint,
                                                                                          monkeypatch):
    for name, value in pipeline_env(endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SYSTEM_ACCESSTOKEN")
    error = project.exit_of(tasks.up, env="qa")
    assert error.code == 2
    assert "needs SYSTEM_ACCESSTOKEN and ARM_SUBSCRIPTION_ID in this step's env" in error.message
    assert project.calls() == [] and OidcEndpoint.requests == [] and project.az_calls() == []
