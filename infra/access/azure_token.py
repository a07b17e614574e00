"""Azure access tokens for the kit's own calls (ARM actions, the AKS API server), with no `az` needed.

The kit signs in as the azure-native provider does (provider/pkg/provider/auth_azidentity.go,
newSingleMethodAuthCredential): a login configured in ARM_* variables is used alone, first a client certificate,
then a client secret, then OIDC (ARM_USE_OIDC with ARM_OIDC_TOKEN, ARM_OIDC_TOKEN_FILE_PATH, the file reread for
every new token, or GitHub Actions' ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN, asked again for every new token with the
provider's audience api://AzureADTokenExchange), then managed identity (ARM_USE_MSI). Otherwise azure-identity's
DefaultAzureCredential tries, in order, the environment (AZURE_* secret or certificate), workload identity
(AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE: the pipelines' token file the kit keeps fresh,
infra.lifecycle.federation), managed identity and the developer logins, the Azure CLI among them
(learn.microsoft.com/python/api/azure-identity/azure.identity.defaultazurecredential). Credentials renew their
tokens as they expire. Only a person's `az login` needs the CLI, which the preflight checks for then.
"""
import os
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

ARM = "https://management.azure.com"
ARM_SCOPE = f"{ARM}/.default"
OIDC_AUDIENCE = "api://AzureADTokenExchange"


class AzureLoginError(Exception):
    """No credential could get a token."""


def oidc_assertion(environ: Mapping[str, str]) -> Callable[[], str] | None:
    """With ARM_USE_OIDC: what each token request sends as the client assertion (the token file read again)."""
    if environ.get("ARM_USE_OIDC", "").lower() != "true":
        return None
    token, path = environ.get("ARM_OIDC_TOKEN"), environ.get("ARM_OIDC_TOKEN_FILE_PATH")
    if token:
        return lambda: token
    if path:
        return lambda: Path(path).read_text().strip()
    url, bearer = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL"), environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if url and bearer:
        return lambda: github_id_token(url, bearer)
    return None


def github_id_token(url: str, bearer: str) -> str:
    """A GitHub Actions ID token for Entra ID's token exchange (GET, answer {"value": ...})."""
    import requests

    response = requests.get(url, params={"audience": OIDC_AUDIENCE}, timeout=30,
                            headers={"Authorization": f"Bearer {bearer}", "Accept": "application/json"})
    if response.status_code != 200:
        raise AzureLoginError(f"the GitHub Actions ID token request answered HTTP {response.status_code}")
    return response.json()["value"]


def arm_login(environ: Mapping[str, str]) -> Any | None:
    """The credential of a login configured in ARM_* variables, in the provider's order; None without one."""
    from azure import identity

    tenant, client = environ.get("ARM_TENANT_ID", ""), environ.get("ARM_CLIENT_ID", "")
    if environ.get("ARM_CLIENT_CERTIFICATE_PATH"):
        return identity.CertificateCredential(tenant, client, environ["ARM_CLIENT_CERTIFICATE_PATH"],
                                              password=environ.get("ARM_CLIENT_CERTIFICATE_PASSWORD") or None)
    if environ.get("ARM_CLIENT_SECRET"):
        return identity.ClientSecretCredential(tenant, client, environ["ARM_CLIENT_SECRET"])
    if (assertion := oidc_assertion(environ)) is not None:
        return identity.ClientAssertionCredential(tenant, client, assertion)
    if environ.get("ARM_USE_MSI", "").lower() == "true":
        return identity.ManagedIdentityCredential(client_id=client or None)
    return None


@cache
def credential() -> Any:
    """The process's one credential (its token cache is shared by every call)."""
    from azure.identity import DefaultAzureCredential

    return arm_login(os.environ) or DefaultAzureCredential()


def access_token(scope: str) -> str:
    """A bearer token for `scope` (e.g. ARM_SCOPE, or an AKS server id + '/.default'); never in an error."""
    from azure.core.exceptions import ClientAuthenticationError

    try:
        return credential().get_token(scope).token
    except ClientAuthenticationError:
        raise AzureLoginError(
            f"no Azure credential could get a token for {scope}: sign in with az login, run inside the kit's "
            "pipeline steps (federated login), or set ARM_CLIENT_ID, ARM_TENANT_ID and a secret, certificate or "
            "OIDC token (or AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE)") from None
