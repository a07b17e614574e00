"""preview / up / refresh / destroy through the Automation API against the stand-in CLI; preflight; destroy guard."""
import os
import stat

import pytest
import yaml

from infra.lifecycle import tasks
from infra.lifecycle.guards import DestroyRefused, check_destroy
from infra.stack.settings import Lifecycle
from tests.lifecycle.standin.environment import PASSPHRASE, STANDIN


def test_up_creates_the_stack_with_the_passphrase_provider_then_preview_sees_no_changes(project, capsys):
    project.run(tasks.up, env="qa")
    project.run(tasks.preview, env="qa", expect_no_changes=True)
    calls = project.calls()
    assert ["stack", "init", "qa", "--secrets-provider", "passphrase"] in calls
    assert project.operations("up") == ["qa"] and project.operations("preview") == ["qa"]
    assert all(call[0] != "destroy" for call in calls)
    assert project.state("qa")["resources"] == 42
    assert all(r["cwd"] == str(project.root) for r in project.records() if r["argv"] != ["version"])
    out = capsys.readouterr().out
    assert "up qa: create 42" in out and "preview qa: same 42" in out


def test_the_passphrase_reaches_pulumi_through_the_environment_never_argv_or_output(project, capsys):
    project.run(tasks.up, env="dev")
    project.fail("destroy", "dev")
    error = project.exit_of(tasks.destroy, env="dev", force=True, confirm="dev")
    printed = capsys.readouterr()
    assert PASSPHRASE not in printed.out + printed.err + error.message
    records = project.records()
    assert records and all(PASSPHRASE not in " ".join(record["argv"]) for record in records)
    init = next(r for r in records if r["argv"][1:3] == ["stack", "init"])
    assert "PULUMI_CONFIG_PASSPHRASE" in init["secret_env"]


def test_preview_expecting_no_changes_fails_on_a_stack_that_would_change(project, capsys):
    error = project.exit_of(tasks.preview, env="uat", expect_no_changes=True)
    assert error.code == 1
    assert "preview uat failed: error: no changes were expected" in error.message


def test_refresh_of_a_stack_the_backend_does_not_have_is_a_clear_error(project):
    error = project.exit_of(tasks.refresh, env="dev")
    assert error.code == 2 and "no such stack" in error.message
    assert "init" not in {call[1] for call in project.calls() if len(call) > 1}


def test_invalid_settings_are_reported_before_pulumi_runs(project):
    path = project.root / "Pulumi.dev.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["mlops-edge-kit:cluster"]["systemPool"]["minCount"] = 0
    document["config"]["mlops-edge-kit:namePrefix"] = "Not-A-Prefix"
    path.write_text(yaml.safe_dump(document))
    error = project.exit_of(tasks.up, env="dev")
    assert error.code == 2
    assert "Pulumi.dev.yaml: config.mlops-edge-kit:cluster.systemPool.minCount" in error.message
    assert "Pulumi.dev.yaml: config.mlops-edge-kit:namePrefix" in error.message
    assert project.calls() == []


@pytest.mark.parametrize("env", ["../qa", "QA", ""])
def test_an_env_that_is_not_a_stack_name_is_refused(project, env):
    error = project.exit_of(tasks.up, env=env)
    assert error.code == 2 and "--env" in error.message and project.calls() == []


def test_missing_cli_is_a_clear_exit_2(project, monkeypatch, tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "az").symlink_to(STANDIN / "az")
    monkeypatch.setenv("PATH", f"{bare}{os.pathsep}/usr/bin{os.pathsep}/bin")
    error = project.exit_of(tasks.up, env="qa")
    assert error.code == 2 and "the Pulumi CLI (pulumi) is not on PATH" in error.message
    assert "Azure" not in error.message  # the az stand-in is logged in
    assert project.calls() == []


def test_missing_azure_login_and_passphrase_are_reported_together(project, monkeypatch):
    project.az_login.unlink()
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    error = project.exit_of(tasks.up, env="qa")
    assert error.code == 2
    assert "no Azure login: run 'az login'" in error.message
    assert "PULUMI_CONFIG_PASSPHRASE" in error.message
    assert project.az_calls() == ["az account show --output none"]
    assert project.calls() == []


OIDC_LOGIN = {"ARM_CLIENT_ID": "00000000-0000-0000-0000-000000000001", "ARM_USE_OIDC": "true",
              "ARM_TENANT_ID": "00000000-0000-0000-0000-000000000002",
              "ARM_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000003"}


def test_a_service_principal_with_workload_identity_needs_no_az_login(project, monkeypatch, tmp_path):
    project.az_login.unlink()
    (tmp_path / "id-token").write_text("header.claims.signature")
    for name, value in {**OIDC_LOGIN, "ARM_OIDC_TOKEN_FILE_PATH": str(tmp_path / "id-token")}.items():
        monkeypatch.setenv(name, value)
    project.run(tasks.up, env="qa")
    assert project.operations("up") == ["qa"] and project.az_calls() == []


def test_an_oidc_login_without_an_id_token_is_refused_up_front(project, monkeypatch):
    """Issue 20.3: neither the provider nor the kit's own calls could sign in; say so before any Pulumi call."""
    project.az_login.unlink()
    for name, value in OIDC_LOGIN.items():
        monkeypatch.setenv(name, value)
    error = project.exit_of(tasks.up, env="qa")
    assert error.code == 2 and "ARM_USE_OIDC=true needs an ID token: ARM_OIDC_TOKEN" in error.message
    assert project.calls() == [] and project.az_calls() == []


def test_a_passphrase_file_must_be_private(project, monkeypatch, tmp_path):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o644)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(secret))
    error = project.exit_of(tasks.up, env="qa")
    assert error.code == 2 and "readable by others; chmod 600" in error.message and project.calls() == []
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR)
    project.run(tasks.up, env="qa")
    assert project.operations("up") == ["qa"]


def test_bad_backend_and_secrets_provider_are_reported_together(project):
    error = project.exit_of(tasks.up, env="qa", backend="ftp://state", secrets_provider="awskms://key")
    assert error.code == 2
    assert "--backend: 'ftp://state' is not a Pulumi backend URL" in error.message
    assert "--secrets-provider: 'awskms://key' must be 'passphrase' or 'azurekeyvault://" in error.message
    assert project.calls() == []


def test_a_key_vault_secrets_provider_and_backend_option_reach_the_cli(project, tmp_path):
    vault = "azurekeyvault://kv-mlk-qa.vault.azure.net/keys/pulumi-state"
    other = tmp_path / "other-state"
    project.run(tasks.up, env="qa", backend=f"file://{other}", secrets_provider=vault)
    assert ["stack", "init", "qa", "--secrets-provider", vault] in project.calls()
    assert (other / ".pulumi" / "stacks" / "mlops-edge-kit" / "qa.json").exists()
    assert not project.backend.exists()
    assert stat.S_IMODE(other.stat().st_mode) == 0o700


def test_the_default_backend_is_a_private_directory_in_home(project, monkeypatch, tmp_path):
    monkeypatch.delenv("PULUMI_BACKEND_URL")
    project.run(tasks.up, env="qa")
    state = tmp_path / "home" / ".pulumi-mlops-edge-kit"
    assert (state / ".pulumi" / "stacks" / "mlops-edge-kit" / "qa.json").exists()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


@pytest.mark.parametrize("options", [{}, {"force": True}, {"force": True, "confirm": "qa"},
                                     {"force": True, "confirm": "pro"}])
def test_prod_is_never_destroyed_without_force_and_its_name(project, options):
    project.run(tasks.up, env="prod")
    before = len(project.calls())
    error = project.exit_of(tasks.destroy, env="prod", **options)
    assert error.code == 2 and "destroy refused" in error.message
    assert len(project.calls()) == before and project.operations("destroy") == []
    assert project.state("prod")["resources"] == 42


def test_the_refusal_comes_before_preflight_and_before_pulumi_runs(project, monkeypatch):
    project.az_login.unlink()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    error = project.exit_of(tasks.destroy, env="qa")
    assert error.code == 2
    assert "qa is not an ephemeral stack" in error.message and "--force" in error.message
    assert project.calls() == [] and project.az_calls() == []


def test_a_stack_without_a_stack_file_is_not_assumed_ephemeral(project):
    error = project.exit_of(tasks.destroy, env="pr-9-abcdef")
    assert error.code == 2 and "has no Pulumi.pr-9-abcdef.yaml here" in error.message
    assert project.calls() == []


def test_force_and_the_typed_back_name_destroy_a_non_ephemeral_env(project, capsys):
    project.run(tasks.up, env="dev")
    project.run(tasks.destroy, env="dev", force=True, confirm="dev")
    assert project.operations("destroy") == ["dev"]
    assert project.state("dev")["resources"] == 0
    assert "destroy dev: delete 42" in capsys.readouterr().out


def test_the_interactive_prompt_must_get_the_env_name_back():
    asked = []
    prod = Lifecycle(protected=True)
    with pytest.raises(DestroyRefused, match=r"typed back \('pord'\) is not 'prod'"):
        check_destroy("prod", prod, force=True, confirm="", ask=lambda q: asked.append(q) or "pord")
    assert asked == ["prod is a protected environment (lifecycle.protected). Type the env name to destroy it"]
    check_destroy("prod", prod, force=True, confirm="", ask=lambda q: "prod")
    with pytest.raises(DestroyRefused, match="--force needs the env name typed back"):
        check_destroy("prod", prod, force=True, confirm="", ask=None)


def test_a_failing_destroy_is_exit_1_with_the_cli_error(project):
    project.run(tasks.up, env="dev")
    project.fail("destroy", "dev")
    error = project.exit_of(tasks.destroy, env="dev", force=True, confirm="dev")
    assert error.code == 1
    assert "destroy dev failed: error: destroy failed: resource 'aks-dev' is still in use" in error.message
