"""Checks before any Pulumi command: the CLI, an Azure login and the secrets passphrase are there."""
import os
import shutil
import subprocess
from pathlib import Path

from infra.lifecycle.backend import Backend
from infra.lifecycle.federation import in_pipeline

SERVICE_PRINCIPAL_VARS = ("ARM_CLIENT_ID", "ARM_TENANT_ID", "ARM_SUBSCRIPTION_ID")
SERVICE_PRINCIPAL_CREDENTIALS = ("ARM_CLIENT_SECRET", "ARM_CLIENT_CERTIFICATE_PATH")
OIDC_TOKEN_SOURCES = ("ARM_OIDC_TOKEN", "ARM_OIDC_TOKEN_FILE_PATH")
GITHUB_OIDC = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
AZ_TIMEOUT_SECONDS = 60


class PreflightError(Exception):
    """What is missing, each with how to fix it."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def preflight(backend: Backend, *, deploys: bool = True) -> None:
    """Raise PreflightError listing every missing prerequisite; Azure login and secrets only when `deploys`."""
    checks = (_cli_problem, _passphrase_problem, _azure_problem) if deploys else (_cli_problem,)
    problems = [problem for check in checks if (problem := check(backend))]
    if problems:
        raise PreflightError(problems)


def _cli_problem(backend: Backend) -> str | None:
    if shutil.which("pulumi"):
        return None
    return "the Pulumi CLI (pulumi) is not on PATH: install it (https://www.pulumi.com/docs/iac/download-install/)"


def _passphrase_problem(backend: Backend) -> str | None:
    if not backend.uses_passphrase() or os.environ.get("PULUMI_CONFIG_PASSPHRASE"):
        return None
    path = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if not path:
        return ("the passphrase secrets provider needs PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE "
                "in the environment (or use --secrets-provider azurekeyvault://...)")
    file = Path(path)
    if not file.is_file():
        return f"PULUMI_CONFIG_PASSPHRASE_FILE: {path} is not a file"
    if file.stat().st_mode & 0o077:
        return f"PULUMI_CONFIG_PASSPHRASE_FILE: {path} is readable by others; chmod 600 it"
    return None


def _azure_problem(backend: Backend) -> str | None:
    if in_pipeline(os.environ):
        return _pipeline_problem()
    if _service_principal_in_env():
        return _oidc_problem()
    if shutil.which("az"):
        try:
            shown = subprocess.run(["az", "account", "show", "--output", "none"], stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=AZ_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            return f"no Azure login: 'az account show' did not answer within {AZ_TIMEOUT_SECONDS}s"
        if shown.returncode == 0:
            return None
    return ("no Azure login: run 'az login' (and 'az account set --subscription <id>'), or set ARM_CLIENT_ID, "
            "ARM_TENANT_ID, ARM_SUBSCRIPTION_ID and ARM_USE_OIDC=true (workload identity) or ARM_CLIENT_SECRET")


def _oidc_problem() -> str | None:
    """ARM_USE_OIDC needs an ID token source the provider and the kit's own calls both read."""
    if (os.environ.get("ARM_USE_OIDC", "").lower() != "true"
            or any(os.environ.get(n) for n in (*SERVICE_PRINCIPAL_CREDENTIALS, *OIDC_TOKEN_SOURCES))
            or all(os.environ.get(name) for name in GITHUB_OIDC)):
        return None
    return ("ARM_USE_OIDC=true needs an ID token: ARM_OIDC_TOKEN, ARM_OIDC_TOKEN_FILE_PATH, or GitHub Actions' "
            "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN (in Azure Pipelines, run ./kit inside "
            "AzureCLI@2 with SYSTEM_ACCESSTOKEN mapped instead)")


def _pipeline_problem() -> str | None:
    """A pipeline step's workload identity federation (infra.lifecycle.federation) needs no `az`, but the job's
    access token and the subscription (the provider's default credential takes it from ARM_SUBSCRIPTION_ID)."""
    missing = [name for name in ("SYSTEM_ACCESSTOKEN", "ARM_SUBSCRIPTION_ID") if not os.environ.get(name)]
    if not missing:
        return None
    return (f"the pipeline's workload identity federation needs {' and '.join(missing)} in this step's env "
            "(SYSTEM_ACCESSTOKEN: $(System.AccessToken), ARM_SUBSCRIPTION_ID: the subscription to deploy to)")


def _service_principal_in_env() -> bool:
    if not all(os.environ.get(name) for name in SERVICE_PRINCIPAL_VARS):
        return False
    return (os.environ.get("ARM_USE_OIDC", "").lower() == "true"
            or os.environ.get("ARM_USE_MSI", "").lower() == "true"
            or any(os.environ.get(name) for name in SERVICE_PRINCIPAL_CREDENTIALS))
