"""Who runs `pulumi up`, as ARM's role assignment principalType names it: derived, never configured.

ARM refuses a role assignment whose principalType does not match the principal (UnmatchedPrincipalType), and
pulumi-azure-native sends "User" when it is left unset (authorization/role_assignment.py). The provider's own
access token (azure-native getClientToken, the login getClientConfig's objectId comes from) says what signed in:
Entra ID access tokens carry `idtyp` "app" for an application or managed identity and "user" for a person, and
only delegated (user) tokens carry `scp` (learn.microsoft.com/entra/identity-platform/access-token-claims-reference).
Service principals and managed identities are both "ServicePrincipal" to ARM (learn.microsoft.com/rest/api/
authorization/role-assignments/create, PrincipalType). The claims are read, not verified: ARM verifies the token.
"""
import base64
import binascii
import json
from collections.abc import Mapping
from typing import Literal

PrincipalType = Literal["User", "ServicePrincipal"]
# the provider's environment logins that sign in as a service principal or managed identity
APP_LOGIN_FLAGS = ("ARM_USE_OIDC", "ARM_USE_MSI")
APP_LOGIN_SECRETS = ("ARM_CLIENT_SECRET", "ARM_CLIENT_CERTIFICATE_PATH")


def token_claims(token: str) -> dict:
    """The claims of a JWT access token (its middle part); {} when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def app_login_in(environ: Mapping[str, str]) -> bool:
    """Whether the provider's environment configures a service principal or managed identity login."""
    return bool(environ.get("ARM_CLIENT_ID")) and (
        any(environ.get(flag, "").lower() == "true" for flag in APP_LOGIN_FLAGS)
        or any(environ.get(name) for name in APP_LOGIN_SECRETS))


def principal_type(token: str, environ: Mapping[str, str]) -> PrincipalType:
    """The deployer's principalType: the token's idtyp, else an app login in the environment, else whether the
    token is delegated (scp)."""
    claims = token_claims(token)
    idtyp = str(claims.get("idtyp", "")).lower()
    if idtyp in ("app", "user"):
        return "ServicePrincipal" if idtyp == "app" else "User"
    if app_login_in(environ):
        return "ServicePrincipal"
    return "User" if "scp" in claims else "ServicePrincipal"
