"""Edge sites reach the private registry: their egress addresses on its public endpoint, and a token each.

The registry stays private to the VNET (private endpoint) and opens its public endpoint only to the sites' egress
addresses (networkRuleSet defaultAction Deny + ipRules: Premium only; learn.microsoft.com/azure/container-registry/
container-registry-access-selected-networks). Each site signs in with its own repository-scoped token whose scope
map allows pull on the repositories it runs and push only on those it builds (actions
`repositories/<repo>/content/read|write`, `metadata/read`: learn.microsoft.com/azure/container-registry/
container-registry-token-based-repository-permissions). ACR generates a token's passwords only through the
registry's `generateCredentials` action, which pulumi-azure-native does not expose: a small dynamic resource calls
it once (plain HTTPS to ARM, with a token from azure-identity's credential chain: no `az` needed) and keeps the
password as a secret for the stack output the edge bootstrap reads.
"""
import time
from typing import Any

import pulumi
import requests
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider
from pulumi_azure_native import containerregistry

from infra.access import azure_token
from infra.stack.settings import EdgeSiteRegistry

API_VERSION = "2025-04-01"
PULL_ACTIONS = ("content/read", "metadata/read")
PUSH_ACTIONS = ("content/write",)


def scope_actions(pull: list[str], push: list[str]) -> list[str]:
    """A scope map's actions: pull on every repository read or written, push on those written."""
    repositories = dict.fromkeys([*pull, *push])
    actions = [f"repositories/{repo}/{action}" for repo in repositories for action in PULL_ACTIONS]
    return actions + [f"repositories/{repo}/{action}" for repo in push for action in PUSH_ACTIONS]


def generate_password(registry_id: str, token_id: str, name: str, bearer: str, *, poll_s: float = 5,
                      attempts: int = 60) -> dict[str, str]:
    """POST generateCredentials (a long-running ARM operation); returns {"username", "password"}."""
    headers = {"Authorization": f"Bearer {bearer}"}
    response = requests.post(f"{azure_token.ARM}{registry_id}/generateCredentials", params={"api-version": API_VERSION},
                             json={"tokenId": token_id, "name": name}, headers=headers, timeout=60)
    for _ in range(attempts):
        if response.status_code != 202:
            break
        time.sleep(poll_s)
        response = requests.get(response.headers["Location"], headers=headers, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"generateCredentials for {token_id} answered HTTP {response.status_code}")
    body = response.json()
    password = next(p["value"] for p in body["passwords"] if p.get("name") == name)
    return {"username": body["username"], "password": password}


class TokenPasswordProvider(ResourceProvider):
    """Generates the password once; a new token (or password name) generates a new one."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        credentials = generate_password(props["registry_id"], props["token_id"], props["password_name"],
                                        azure_token.access_token(azure_token.ARM_SCOPE))
        return CreateResult(id_=f"{props['token_id']}/{props['password_name']}", outs={**props, **credentials})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in ("registry_id", "token_id", "password_name") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=False)


class TokenPassword(Resource):
    """One generated password of a registry token (`password1`), kept secret."""

    username: pulumi.Output[str]
    password: pulumi.Output[str]

    def __init__(self, name: str, *, registry_id: pulumi.Input[str], token_id: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        props = {"registry_id": registry_id, "token_id": token_id, "password_name": "password1",
                 "username": None, "password": None}
        super().__init__(TokenPasswordProvider(), name, props, pulumi.ResourceOptions.merge(
            pulumi.ResourceOptions(additional_secret_outputs=["password"]), opts))


class EdgeRegistryAccess(pulumi.ComponentResource):
    """Per edge site: a scope map, a token and its password; `credentials` is {site: {server, username, password}}."""

    def __init__(self, name: str, *, resource_group: pulumi.Input[str], registry: containerregistry.Registry,
                 sites: list[EdgeSiteRegistry], opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:EdgeRegistryAccess", name, None, opts)
        credentials = {site.name: scoped_token(
            f"{name}-{site.name}", f"edge-{site.name}", resource_group=resource_group, registry=registry,
            actions=scope_actions(site.pull, site.push),
            description=f"Edge site {site.name}: pull what it runs, push what it builds", parent=self)
            for site in sites}
        self.credentials = pulumi.Output.secret(credentials)
        self.register_outputs({})


def scoped_token(name: str, token_name: str, *, resource_group: pulumi.Input[str],
                 registry: containerregistry.Registry, actions: list[str], description: str,
                 parent: pulumi.Resource) -> dict[str, pulumi.Output[str]]:
    """A scope map allowing exactly `actions`, a token on it and its generated password: {server, username,
    password} (the password a secret)."""
    child = pulumi.ResourceOptions(parent=parent)
    scope = containerregistry.ScopeMap(
        f"{name}-scope", resource_group_name=resource_group, registry_name=registry.name, scope_map_name=token_name,
        actions=actions, description=description, opts=child)
    token = containerregistry.Token(
        f"{name}-token", resource_group_name=resource_group, registry_name=registry.name, token_name=token_name,
        scope_map_id=scope.id, status="enabled", opts=child)
    password = TokenPassword(f"{name}-password", registry_id=registry.id, token_id=token.id, opts=child)
    return {"server": registry.login_server, "username": password.username, "password": password.password}


def network_rules(sites: list[EdgeSiteRegistry]) -> dict | None:
    """The public endpoint's allow list: the sites' egress addresses (None: no site needs it)."""
    addresses = dict.fromkeys(str(ip) for site in sites for ip in site.egress_ips)
    if not addresses:
        return None
    return {"default_action": "Deny",
            "ip_rules": [{"i_p_address_or_range": address, "action": "Allow"} for address in addresses]}
