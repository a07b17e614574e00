"""Issue 20.3: the kit's own Azure calls sign in as the provider does, through azure-identity, never through `az`."""
from azure import identity

from infra.access.azure_token import arm_login, oidc_assertion

SP = {"ARM_CLIENT_ID": "00000000-0000-4000-8000-000000000001", "ARM_TENANT_ID": "00000000-0000-4000-8000-000000000002",
      "ARM_SUBSCRIPTION_ID": "00000000-0000-4000-8000-000000000003"}


def test_an_arm_client_secret_login_is_used_as_the_provider_uses_it():
    assert isinstance(arm_login({**SP, "ARM_CLIENT_SECRET": "s3cret"}), identity.ClientSecretCredential)


def test_an_oidc_token_file_is_read_again_for_every_new_token(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    environ = {**SP, "ARM_USE_OIDC": "true", "ARM_OIDC_TOKEN_FILE_PATH": str(token_file)}
    assert isinstance(arm_login(environ), identity.ClientAssertionCredential)
    assertion = oidc_assertion(environ)
    assert assertion() == "first"
    token_file.write_text("second\n")
    assert assertion() == "second"


def test_a_managed_identity_login_names_its_client():
    assert isinstance(arm_login({**SP, "ARM_USE_MSI": "true"}), identity.ManagedIdentityCredential)


def test_without_an_arm_login_the_default_chain_decides():
    assert arm_login({}) is None
    assert arm_login({**SP, "ARM_USE_OIDC": "true"}) is None  # no token source: not a usable OIDC login


def test_a_github_actions_login_asks_for_a_new_id_token_each_time(monkeypatch):
    asked = []

    class Answer:
        status_code = 200

        def __init__(self, n):
            self.n = n

        def json(self):
            return {"value": f"gh-token-{self.n}"}

    def get(url, params, timeout, headers):
        asked.append((url, params, headers["Authorization"]))
        return Answer(len(asked))
    monkeypatch.setattr("requests.get", get)
    environ = {**SP, "ARM_USE_OIDC": "true", "ACTIONS_ID_TOKEN_REQUEST_URL": "https://gh.example/token?x=1",
               "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runner-bearer"}
    assertion = oidc_assertion(environ)
    assert (assertion(), assertion()) == ("gh-token-1", "gh-token-2")
    assert asked[0] == ("https://gh.example/token?x=1", {"audience": "api://AzureADTokenExchange"},
                        "Bearer runner-bearer")
