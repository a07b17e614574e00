"""The site's registry credential: from the Pulumi stack output (stand-in CLI), an env var or a 0600 file."""
import json
import os
from pathlib import Path

import pytest

from edge_hosts.inventory.credentials import CredentialError, RegistryCredential, site_registry_credential
from edge_hosts.inventory.load import InventoryError, load_inventory
from helpers import valid_document, write_inventory

STANDINS = Path(__file__).parent / "standins"
PASSWORD = "pw-Zq8#not-in-logs"
ENTRY = {"server": "acrqa.azurecr.io", "username": "edge-t1", "password": PASSWORD}
STACK = "organization/mlops-edge-kit/qa"


def inventory_with(tmp_path, credentials: dict):
    doc = valid_document()
    doc["registries"] = {"credentials": credentials}
    return load_inventory(str(write_inventory(tmp_path, doc)))


@pytest.fixture
def pulumi_env(tmp_path):
    """An environment whose PATH finds the stand-in pulumi, with the qa stack's outputs."""
    state = tmp_path / "pulumi-state.json"
    state.write_text(json.dumps({STACK: {"outputs": {"edgeRegistryCredentials": {"t1": ENTRY, "uat": {
        **ENTRY, "username": "edge-uat"}}}, "secret": ["edgeRegistryCredentials"]}}))
    return {"PATH": f"{STANDINS}:{os.environ['PATH']}", "STANDIN_PULUMI_STATE": str(state),
            "STANDIN_PULUMI_LOG": str(tmp_path / "pulumi.log")}


def test_from_the_stack_output_with_the_secret_never_in_argv(tmp_path, pulumi_env):
    credential = site_registry_credential(inventory_with(tmp_path, {"pulumiStack": STACK}), pulumi_env)
    assert credential == RegistryCredential(**ENTRY)
    argv = [json.loads(line) for line in Path(pulumi_env["STANDIN_PULUMI_LOG"]).read_text().splitlines()]
    assert argv == [["stack", "output", "edgeRegistryCredentials", "--show-secrets", "--json", "--non-interactive",
                     "--stack", STACK]]
    assert PASSWORD not in repr(credential)


def test_another_sites_key_in_the_stack_output(tmp_path, pulumi_env):
    credential = site_registry_credential(inventory_with(tmp_path, {"pulumiStack": STACK, "site": "uat"}), pulumi_env)
    assert credential.username == "edge-uat"


def test_a_site_the_stack_has_no_token_for(tmp_path, pulumi_env):
    inventory = inventory_with(tmp_path, {"pulumiStack": STACK, "site": "nope"})
    with pytest.raises(CredentialError, match=r"edgeRegistryCredentials\['nope'\].*sites there: t1, uat"):
        site_registry_credential(inventory, pulumi_env)


def test_without_the_cli_or_a_login_the_message_says_what_is_needed(tmp_path, pulumi_env):
    inventory = inventory_with(tmp_path, {"pulumiStack": STACK})
    with pytest.raises(CredentialError, match="Pulumi CLI is not on PATH.*pulumi login"):
        site_registry_credential(inventory, {**pulumi_env, "PATH": str(tmp_path)})
    with pytest.raises(CredentialError, match="PULUMI_ACCESS_TOKEN must be set.*pulumi login"):
        site_registry_credential(inventory, {**pulumi_env, "STANDIN_PULUMI_STATE": ""})


def test_an_unknown_stack_is_named(tmp_path, pulumi_env):
    inventory = inventory_with(tmp_path, {"pulumiStack": "organization/mlops-edge-kit/nope"})
    with pytest.raises(CredentialError, match="no stack named 'organization/mlops-edge-kit/nope' found"):
        site_registry_credential(inventory, pulumi_env)


def test_from_an_environment_variable(tmp_path):
    inventory = inventory_with(tmp_path, {"env": "EDGE_T1_REGISTRY"})
    assert site_registry_credential(inventory, {"EDGE_T1_REGISTRY": json.dumps(ENTRY)}).password == PASSWORD
    with pytest.raises(CredentialError, match="EDGE_T1_REGISTRY is not set"):
        site_registry_credential(inventory, {})


def test_bad_json_never_echoes_the_secret(tmp_path):
    inventory = inventory_with(tmp_path, {"env": "EDGE_T1_REGISTRY"})
    for text in (f'{{"server": "acrqa.azurecr.io", "password": "{PASSWORD}"', json.dumps({**ENTRY, "username": ""}),
                 json.dumps([PASSWORD])):
        with pytest.raises(CredentialError) as caught:
            site_registry_credential(inventory, {"EDGE_T1_REGISTRY": text})
        assert PASSWORD not in str(caught.value) and "EDGE_T1_REGISTRY" in str(caught.value)
        assert caught.value.__context__ is None or caught.value.__suppress_context__  # no JSON error chained


def test_a_server_that_is_not_a_registry_host(tmp_path):
    inventory = inventory_with(tmp_path, {"env": "V"})
    with pytest.raises(CredentialError, match="server 'https://x/y' is not a registry host"):
        site_registry_credential(inventory, {"V": json.dumps({**ENTRY, "server": "https://x/y"})})


def test_from_a_0600_file_relative_to_the_inventory(tmp_path):
    secret = tmp_path / "registry.json"
    secret.write_text(json.dumps(ENTRY))
    secret.chmod(0o600)
    inventory = inventory_with(tmp_path, {"file": "registry.json"})
    assert inventory.registries.credentials.file == secret
    assert site_registry_credential(inventory, {}).server == "acrqa.azurecr.io"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o610])
def test_a_file_others_can_access_is_refused_like_ssh_does(tmp_path, mode):
    secret = tmp_path / "registry.json"
    secret.write_text(json.dumps(ENTRY))
    secret.chmod(mode)
    with pytest.raises(CredentialError, match=f"Permissions {mode:04o} for '{secret}' are too open"):
        site_registry_credential(inventory_with(tmp_path, {"file": "registry.json"}), {})


def test_a_missing_file(tmp_path):
    with pytest.raises(CredentialError, match="registry.json: cannot be read: No such file"):
        site_registry_credential(inventory_with(tmp_path, {"file": "registry.json"}), {})


def test_no_source_is_a_clear_error(tmp_path):
    doc = valid_document()
    doc["registries"] = {"mirrors": {"docker.io": None}}
    with pytest.raises(CredentialError, match="registries.credentials: not set"):
        site_registry_credential(load_inventory(str(write_inventory(tmp_path, doc))), {})


@pytest.mark.parametrize("credentials, problem", [
    ({}, "registries.credentials: Value error, give exactly one of pulumiStack, env or file (got none)"),
    ({"env": "A", "file": "f"}, "give exactly one of pulumiStack, env or file (got env, file)"),
    ({"env": "A", "password": "x"}, "registries.credentials.password: Extra inputs are not permitted"),
    ({"pulumiStack": "qa"}, "registries.credentials.pulumiStack: String should match pattern"),
    ({"env": "A", "site": "uat"}, "site picks the entry of pulumiStack's output"),
])
def test_the_inventory_names_one_source_and_never_holds_the_secret(tmp_path, credentials, problem):
    doc = valid_document()
    doc["registries"] = {"credentials": credentials}
    with pytest.raises(InventoryError) as caught:
        load_inventory(str(write_inventory(tmp_path, doc)))
    assert problem in str(caught.value)


def test_from_this_processs_environment_it_is_looked_up_once(tmp_path, pulumi_env, monkeypatch):
    for name, value in pulumi_env.items():
        monkeypatch.setenv(name, value)
    inventory = inventory_with(tmp_path, {"pulumiStack": STACK})
    assert site_registry_credential(inventory) == site_registry_credential(inventory) == RegistryCredential(**ENTRY)
    assert len(Path(pulumi_env["STANDIN_PULUMI_LOG"]).read_text().splitlines()) == 1
