"""The environment that puts the stand-in `pulumi` and `az` in front of a scratch copy of the Pulumi project."""
import shutil
import sys
from pathlib import Path

from infra.stack.stack_config import ROOT, available_envs

STANDIN = Path(__file__).parent
PASSPHRASE = "correct-horse-battery-staple-4711"
UNSET = ("ARM_CLIENT_ID", "ARM_TENANT_ID", "ARM_SUBSCRIPTION_ID", "ARM_CLIENT_SECRET", "ARM_USE_OIDC", "ARM_USE_MSI",
         "ARM_CLIENT_CERTIFICATE_PATH", "PULUMI_CONFIG_PASSPHRASE_FILE", "ARM_OIDC_TOKEN", "ARM_OIDC_TOKEN_FILE_PATH",
         "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "SYSTEM_OIDCREQUESTURI",
         "SYSTEM_ACCESSTOKEN", "AZURESUBSCRIPTION_CLIENT_ID", "AZURESUBSCRIPTION_TENANT_ID",
         "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID")


def scratch_project(scratch: Path) -> Path:
    """A copy of the repo's Pulumi.yaml and stack files under `scratch`/project."""
    root = scratch / "project"
    root.mkdir()
    for name in ["Pulumi.yaml"] + [f"Pulumi.{env}.yaml" for env in available_envs()]:
        shutil.copy(ROOT / name, root / name)
    return root


def standin_environment(scratch: Path, path: str) -> dict[str, str]:
    """Variables to set (on top of unsetting UNSET): stand-ins first on PATH, a file backend, logged in to Azure."""
    (scratch / "az-logged-in").write_text("")
    return {"HOME": str(scratch / "home"), "PATH": f"{STANDIN}:{path}", "STANDIN_PYTHON": sys.executable,
            "STANDIN_LOG": str(scratch / "pulumi.log"), "STANDIN_AZ_LOGIN": str(scratch / "az-logged-in"),
            "PULUMI_BACKEND_URL": f"file://{scratch / 'state'}", "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}
