"""KubernetesAccessReady: wait, bounded, until the Kubernetes API lets the deploying principal in.

A fresh Azure RBAC grant on AKS takes effect only after Azure propagates it ("it can take up to 10 minutes
for changes to take effect": learn.microsoft.com/azure/role-based-access-control/troubleshooting, section
"Role assignment changes are not being detected"). Until then every Kubernetes call answers 403. This
dynamic resource asks the API server itself, with a SelfSubjectAccessReview (authorization.k8s.io/v1, which
every authenticated user may create), whether the caller may do everything, and polls until it may or the
deadline passes (then `pulumi up` fails with what to check, not with a 403 half-way through). It signs in as the
principal running `up` (the one granted): an Entra ID token for the cluster's server id (the kubeconfig's kubelogin
`--server-id`) from azure-identity's credential chain, so it needs neither `az` nor kubelogin. An API server
that cannot be reached yet (its name not resolving, the connection refused or reset, a TLS handshake timing out:
a new private cluster's endpoint and peering settle after ARM reports the cluster) is polled the same way.
"""
import base64
import tempfile
import time
from typing import Any, Callable

import pulumi
import requests
import yaml
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

from infra.access.azure_token import access_token
from infra.access.kubelogin import arg_value

DEADLINE_SECONDS = 15 * 60  # Azure documents up to 10 minutes; the rest covers token refresh and API latency
POLL_SECONDS = 15
UNREACHABLE = "unreachable"
REVIEW = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
          "spec": {"resourceAttributes": {"verb": "*", "group": "*", "resource": "*"}}}


class AccessNotGranted(Exception):
    """The API server still refuses the caller at the deadline."""


def wait_until(check: Callable[[], tuple[bool, str]], *, endpoint: str, deadline_s: float = DEADLINE_SECONDS,
               poll_s: float = POLL_SECONDS, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> int:
    """Call `check` until it answers (True, _); returns the number of attempts; raises at the deadline."""
    end, attempts = clock() + deadline_s, 0
    while True:
        attempts += 1
        allowed, reason = check()
        if allowed:
            return attempts
        if clock() + poll_s > end:
            raise AccessNotGranted(timeout_message(endpoint, reason, deadline_s))
        sleep(poll_s)


def timeout_message(endpoint: str, reason: str, deadline_s: float) -> str:
    """What the last answer says to check: the network path to the endpoint, or the deployer's grant."""
    if reason.startswith(UNREACHABLE):
        return (f"the Kubernetes API at {endpoint} was still unreachable after {deadline_s:.0f}s ({reason}); check "
                "that this machine resolves and reaches it (VNET peering, the API server's DNS name, its authorized "
                "IP ranges)")
    return (f"the Kubernetes API at {endpoint} still denies the deploying principal after {deadline_s:.0f}s "
            f"({reason}); check its 'Azure Kubernetes Service RBAC Cluster Admin' assignment on the cluster")


def unreachable(err: requests.RequestException) -> str:
    """The reason for a connection that failed before HTTP: the exception's kind only (never its text)."""
    kind = ("timed out" if isinstance(err, requests.Timeout) else
            "TLS handshake failed" if isinstance(err, requests.exceptions.SSLError) else
            "no connection (name not resolved, refused or reset)")
    return f"{UNREACHABLE}: {kind}"


def server_scope(user: dict[str, Any]) -> str:
    """The token scope of the cluster's Entra ID server application, read from the kubelogin user's --server-id."""
    server_id = arg_value(list((user.get("exec") or {}).get("args") or []), "--server-id")
    if not server_id:
        raise AccessNotGranted("the kubeconfig's user has no kubelogin --server-id (not an Entra ID cluster?)")
    return f"{server_id}/.default"


def current_cluster(kubeconfig: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The kubeconfig's current cluster and user entries."""
    document = yaml.safe_load(kubeconfig)
    context = next(c["context"] for c in document["contexts"] if c["name"] == document["current-context"])
    cluster = next(c["cluster"] for c in document["clusters"] if c["name"] == context["cluster"])
    return cluster, next(u["user"] for u in document["users"] if u["name"] == context["user"])


def wait_for_access(kubeconfig: str) -> int:
    """Wait until the kubeconfig's current cluster lets its user do everything; returns the attempts."""
    return wait_until(access_check(kubeconfig), endpoint=current_cluster(kubeconfig)[0]["server"])


def access_check(kubeconfig: str) -> Callable[[], tuple[bool, str]]:
    """A check that asks the kubeconfig's current cluster whether its user may do everything."""
    cluster, user = current_cluster(kubeconfig)
    scope = server_scope(user)

    def check() -> tuple[bool, str]:
        with tempfile.NamedTemporaryFile("wb", suffix=".crt") as ca:
            ca.write(base64.b64decode(cluster["certificate-authority-data"]))
            ca.flush()
            try:
                response = requests.post(
                    f"{cluster['server']}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=REVIEW,
                    headers={"Authorization": f"Bearer {access_token(scope)}"}, verify=ca.name, timeout=30)
            except (requests.ConnectionError, requests.Timeout) as err:
                return False, unreachable(err)
        if response.status_code in (401, 403):
            return False, f"HTTP {response.status_code}"
        response.raise_for_status()
        status = response.json().get("status", {})
        allowed = bool(status.get("allowed"))
        return allowed, status.get("reason") or ("allowed" if allowed else "not allowed yet")
    return check


class AccessReadyProvider(ResourceProvider):
    """Runs the wait on create, and again whenever the grant it waits for changes."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        attempts = wait_for_access(props["kubeconfig"])
        return CreateResult(id_=props["cluster_id"], outs={**props, "attempts": attempts})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**news, "attempts": wait_for_access(news["kubeconfig"])})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in ("cluster_id", "grants") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(replaces) or olds.get("kubeconfig") != news.get("kubeconfig"),
                          replaces=replaces, delete_before_replace=True)


class KubernetesAccessReady(Resource):
    """Created once the cluster's API server allows the deploying principal everything (or fails at a deadline)."""

    def __init__(self, name: str, *, cluster_id: pulumi.Input[str], kubeconfig: pulumi.Input[str],
                 grants: list[pulumi.Input[str]], opts: pulumi.ResourceOptions | None = None):
        props = {"cluster_id": cluster_id, "kubeconfig": pulumi.Output.secret(kubeconfig), "grants": grants,
                 "attempts": None}
        super().__init__(AccessReadyProvider(), name, props, pulumi.ResourceOptions.merge(
            pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"]), opts))
