"""Azure DevOps REST client for agent pools and agents (the parts the kit needs).

Errors are `AzdoError` with a message that names what is wrong (bad organization URL,
expired or under-scoped PAT, missing pool) and never contains the token.
"""
import base64
import ipaddress
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = "7.1-preview.1"
CONTINUATION_HEADER = "x-ms-continuationtoken"
PAT_SCOPE_HINT = "the PAT needs the scope 'Agent Pools (Read & manage)'"


class AzdoError(Exception):
    """A failed Azure DevOps call; `user_error` is true when the cause is the caller's input."""

    def __init__(self, message: str, user_error: bool = True):
        super().__init__(message)
        self.user_error = user_error


class PoolNotFound(AzdoError):
    """The named agent pool does not exist (or the token cannot see it)."""


class Agent(BaseModel):
    """One agent as the REST API returns it (fields the kit uses)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: int
    name: str
    status: str = "offline"
    enabled: bool = True
    version: str = ""
    created_on: datetime | None = Field(default=None, alias="createdOn")
    status_changed_on: datetime | None = Field(default=None, alias="statusChangedOn")
    assigned_request: dict[str, Any] | None = Field(default=None, alias="assignedRequest")
    system_capabilities: dict[str, str] = Field(default_factory=dict, alias="systemCapabilities")
    user_capabilities: dict[str, str] = Field(default_factory=dict, alias="userCapabilities")

    @property
    def online(self) -> bool:
        return self.status.lower() == "online"

    @property
    def busy(self) -> bool:
        return self.assigned_request is not None


def check_org_url(url: str) -> str:
    """The organization URL without a trailing slash; AzdoError when it cannot be one."""
    parsed = urllib.parse.urlparse(url.strip())
    problem = ""
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        problem = "it must look like https://dev.azure.com/<organization>"
    elif parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        problem = "plain http is only accepted for a loopback address; use https"
    elif parsed.query or parsed.fragment:
        problem = "it must not carry a query or fragment"
    if problem:
        raise AzdoError(f"bad organization URL {url!r}: {problem}")
    return url.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Azure DevOps answers an expired PAT with a redirect to its sign-in page: keep it visible."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class AzdoClient:
    """Calls `{org}/_apis/distributedtask/...` with a PAT (or an Entra access token)."""

    def __init__(self, org_url: str, token: str, timeout: float = 30.0):
        self.org_url = check_org_url(org_url)
        self._auth = "Basic " + base64.b64encode(f":{token}".encode()).decode()
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    # --- transport -------------------------------------------------------------------------
    def _request(self, method: str, path: str, query: dict | None = None,
                 body: dict | None = None) -> tuple[Any, dict[str, str]]:
        params = {**(query or {}), "api-version": API_VERSION}
        url = f"{self.org_url}/_apis/{path}?{urllib.parse.urlencode(params)}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": self._auth, "Accept": "application/json",
            "Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=self._timeout) as resp:
                return self._decode(resp.status, resp.headers, resp.read()), dict(resp.headers)
        except urllib.error.HTTPError as err:
            raise self._http_error(err.code, path, err.headers) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise AzdoError(f"bad organization URL {self.org_url!r}: cannot reach it ({reason})") from None

    def _decode(self, status: int, headers, raw: bytes) -> Any:
        content_type = headers.get("Content-Type", "")
        if status == 203 or (raw and "json" not in content_type):
            raise AzdoError(f"the token was refused by {self.org_url} (sign-in page returned): "
                            "the PAT is expired or revoked; create a new one")
        return json.loads(raw) if raw else None

    def _http_error(self, code: int, path: str, headers) -> AzdoError:
        location = (headers or {}).get("Location", "") if headers else ""
        if code == 401 or (code in (301, 302, 303, 307) and "signin" in location.lower()):
            return AzdoError(f"the token was refused by {self.org_url} (HTTP {code}): "
                             "the PAT is expired, revoked or wrong; create a new one")
        if code == 403:
            return AzdoError(f"access denied by {self.org_url} for {path}: {PAT_SCOPE_HINT}")
        if code == 404 and not path.startswith("distributedtask/pools/"):
            return AzdoError(f"bad organization URL {self.org_url!r}: no Azure DevOps "
                             "organization answers there (HTTP 404)")
        return AzdoError(f"Azure DevOps call {path} failed with HTTP {code}", user_error=code < 500)

    def _paged(self, path: str, query: dict) -> Iterator[dict]:
        token = None
        while True:
            page_query = {**query, **({"continuationToken": token} if token else {})}
            payload, headers = self._request("GET", path, page_query)
            yield from payload.get("value", [])
            token = {k.lower(): v for k, v in headers.items()}.get(CONTINUATION_HEADER)
            if not token:
                return

    # --- pools and agents ------------------------------------------------------------------
    def pool_id(self, pool_name: str) -> int:
        """Id of the pool named `pool_name`; AzdoError when it does not exist."""
        for pool in self._paged("distributedtask/pools", {"poolName": pool_name}):
            if pool.get("name", "").lower() == pool_name.lower():
                return int(pool["id"])
        raise PoolNotFound(f"agent pool {pool_name!r} not found in {self.org_url} "
                        "(or the PAT cannot see it)")

    def agents(self, pool_id: int) -> list[Agent]:
        """All agents of a pool, following continuation tokens."""
        query = {"includeCapabilities": "true", "includeAssignedRequest": "true"}
        return [Agent.model_validate(a)
                for a in self._paged(f"distributedtask/pools/{pool_id}/agents", query)]

    def find_agent(self, pool_id: int, name: str) -> Agent | None:
        query = {"agentName": name, "includeCapabilities": "true"}
        for raw in self._paged(f"distributedtask/pools/{pool_id}/agents", query):
            if raw.get("name", "").lower() == name.lower():
                return Agent.model_validate(raw)
        return None

    def add_agent(self, pool_id: int, name: str, version: str,
                  capabilities: dict[str, str]) -> Agent:
        """Register an agent record (no running agent behind it: it stays offline)."""
        body = {"name": name, "version": version, "enabled": True, "status": "offline",
                "osDescription": "placeholder (never runs jobs)",
                "systemCapabilities": dict(capabilities), "userCapabilities": {}}
        payload, _ = self._request("POST", f"distributedtask/pools/{pool_id}/agents", body=body)
        return Agent.model_validate(payload)

    def update_agent_capabilities(self, pool_id: int, agent_id: int,
                                  capabilities: dict[str, str]) -> None:
        """Replace an agent's user capabilities."""
        self._request("PUT", f"distributedtask/pools/{pool_id}/agents/{agent_id}/usercapabilities",
                      body=dict(capabilities))

    def delete_agent(self, pool_id: int, agent_id: int) -> None:
        self._request("DELETE", f"distributedtask/pools/{pool_id}/agents/{agent_id}")
