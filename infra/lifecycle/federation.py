"""A pipeline's workload identity federation, kept valid for a whole run (hours, not the ID token's 10 minutes).

An Azure Pipelines ID token lasts 10 minutes, and a login made once from it (AzureCLI@2's `az login
--federated-token`) cannot get a new access token after that (Azure/azure-cli#28708), while `up` asks for tokens
long after AKS creation. The kit asks the pipeline's OIDC endpoint for a fresh ID token every 4 minutes, as
azure-identity's AzurePipelinesCredential does per token request (POST $SYSTEM_OIDCREQUESTURI?api-version=7.1&
serviceConnectionId=..., bearer System.AccessToken; answer {"oidcToken": ...}), and keeps it in a 0600 file that
every credential of the run reads again when it needs a new access token (AZURE_FEDERATED_TOKEN_FILE): the
azure-native provider through azidentity's DefaultAzureCredential (ARM_USE_DEFAULT_AZURE_CREDENTIAL; its OIDC
request-URL mode is GitHub's GET protocol, not Azure DevOps'; provider/pkg/provider/auth_azidentity.go), whose
WorkloadIdentityCredential rereads the file at most every 10 minutes, the Pulumi azblob backend's default
credential, and the kit's own azure-identity DefaultAzureCredential. Active only inside an AzureCLI@2 (or
AzurePowerShell@5) step of a workload identity federation service connection: the task exports
AZURESUBSCRIPTION_CLIENT_ID, _TENANT_ID and _SERVICE_CONNECTION_ID (azure-pipelines-tasks AzureCLIV2).
"""
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path

PIPELINE_VARS = ("SYSTEM_OIDCREQUESTURI", "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", "AZURESUBSCRIPTION_CLIENT_ID",
                 "AZURESUBSCRIPTION_TENANT_ID")
OIDC_API_VERSION = "7.1"
REFRESH_SECONDS = 240.0  # the ID token lasts 10 minutes; WorkloadIdentityCredential keeps what it read for 10
RETRY_SECONDS = 30.0


class FederationError(Exception):
    """The pipeline's OIDC endpoint gave no ID token; `problems` says what to check."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def in_pipeline(environ: MutableMapping[str, str]) -> bool:
    """Whether this runs in an Azure Pipelines step signed in with a workload identity service connection."""
    return all(environ.get(name) for name in PIPELINE_VARS)


def request_id_token(environ: MutableMapping[str, str]) -> str:
    """A fresh ID token for the step's service connection (never in an error message, nor the access token)."""
    import requests  # here, not at load: `./kit --list` imports this module (benchmarks/kit_start.py)

    connection = environ["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"]
    try:
        response = requests.post(environ["SYSTEM_OIDCREQUESTURI"].rstrip("/"),
                                 params={"api-version": OIDC_API_VERSION, "serviceConnectionId": connection},
                                 headers={"Authorization": f"Bearer {environ['SYSTEM_ACCESSTOKEN']}",
                                          "Content-Type": "application/json", "X-TFS-FedAuthRedirect": "Suppress"},
                                 timeout=30)
    except requests.RequestException as err:
        raise FederationError([f"the Azure Pipelines OIDC endpoint (SYSTEM_OIDCREQUESTURI) is unreachable "
                               f"({type(err).__name__})"]) from None
    token = (response.json() if response.status_code == 200 else {}).get("oidcToken")
    if not token:
        raise FederationError([f"the Azure Pipelines OIDC endpoint gave no ID token for service connection "
                               f"{connection} (HTTP {response.status_code}): is SYSTEM_ACCESSTOKEN the job's "
                               "$(System.AccessToken), and the connection authorized for this pipeline?"])
    return token


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by the owner only at every moment."""
    partial = path.with_suffix(".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.replace(partial, path)


def keep_fresh(path: Path, environ: MutableMapping[str, str], stop: threading.Event, refresh_s: float) -> None:
    """Rewrite the token file every `refresh_s` until `stop`; a failed request is retried sooner."""
    wait = refresh_s
    while not stop.wait(wait):
        try:
            write_private(path, request_id_token(environ))
            wait = refresh_s
        except FederationError:
            wait = min(RETRY_SECONDS, refresh_s)


def restore(environ: MutableMapping[str, str], previous: dict[str, str | None]) -> None:
    """Put back each variable as it was (unset where it was unset)."""
    for name, value in previous.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value


@contextmanager
def federated_login(environ: MutableMapping[str, str] = os.environ, *,
                    refresh_s: float = REFRESH_SECONDS) -> Iterator[Path | None]:
    """In a pipeline step, point every Azure credential of the run at a token file kept fresh; yields its path
    (None outside a pipeline, where nothing changes). The environment is restored and the file removed after."""
    if not in_pipeline(environ):
        yield None
        return
    if not environ.get("SYSTEM_ACCESSTOKEN"):
        raise FederationError(["the pipeline's workload identity federation needs SYSTEM_ACCESSTOKEN: map "
                               "SYSTEM_ACCESSTOKEN: $(System.AccessToken) in this step's env"])
    directory = Path(tempfile.mkdtemp(prefix="kit-federation-"))
    path = directory / "azure-federated-token"
    stop = threading.Event()
    try:
        write_private(path, request_id_token(environ))
        added = {"AZURE_CLIENT_ID": environ["AZURESUBSCRIPTION_CLIENT_ID"],
                 "AZURE_TENANT_ID": environ["AZURESUBSCRIPTION_TENANT_ID"], "AZURE_FEDERATED_TOKEN_FILE": str(path),
                 "ARM_CLIENT_ID": environ["AZURESUBSCRIPTION_CLIENT_ID"],
                 "ARM_TENANT_ID": environ["AZURESUBSCRIPTION_TENANT_ID"], "ARM_USE_DEFAULT_AZURE_CREDENTIAL": "true"}
        previous = {name: environ.get(name) for name in added}
        refresher = threading.Thread(target=keep_fresh, args=(path, environ, stop, refresh_s), daemon=True)
        refresher.start()
        environ.update(added)
        try:
            yield path
        finally:
            stop.set()
            refresher.join(timeout=60)
            restore(environ, previous)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
