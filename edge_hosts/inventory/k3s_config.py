"""A site's k3s config.yaml, rendered from its inventory: the node's keys, the role's section and the kit's own keys
(tokens, server URL, TLS SANs, disabled servicelb, etcd snapshot schedule)."""
from __future__ import annotations

from dataclasses import dataclass

import yaml

from edge_hosts.inventory.model import Host, Inventory
from common.k3s import API_PORT, SNAPSHOT_SCHEDULE, as_list


def server_url(inventory: Inventory) -> str:
    """The API URL joins and kubeconfigs use: apiEndpoint, else the first server."""
    return f"https://{inventory.api_host}:{API_PORT}"


@dataclass(frozen=True)
class Tokens:
    """A site's join secrets: the two passwords the kit keeps, the full forms read from the running cluster."""
    server_password: str
    agent_password: str
    server_full: str | None = None
    agent_full: str | None = None

    def values(self) -> set[str]:
        return {v for v in (self.server_password, self.agent_password, self.server_full, self.agent_full) if v}


def _token_keys(inventory: Inventory, host: Host, tokens: Tokens | None) -> dict:
    """The first server seeds the cluster with the short forms (a full form would pin a CA it does not have yet);
    other servers join with the full server token, agents with the full agent token (never the server token)."""
    if tokens is None:
        return {}
    if host == inventory.first_server:
        return {"token": tokens.server_password, "agent-token": tokens.agent_password}
    if host.role == "server":
        keys = {"agent-token": tokens.agent_password}
        return keys | ({"token": tokens.server_full} if tokens.server_full else {})
    return {"token": tokens.agent_full} if tokens.agent_full else {}


def render_config(inventory: Inventory, host: Host, tokens: Tokens | None) -> str:
    """config.yaml for a host: nodeConfig, then the role's section, then the kit's own keys."""
    server = host.role == "server"
    config = {**inventory.k3s.node_config, **(inventory.k3s.server_config if server else inventory.k3s.agent_config)}
    config["node-name"] = host.name
    config["node-ip"] = str(host.address)
    if host.labels:
        config["node-label"] = [f"{k}={v}" for k, v in sorted(host.labels.items())]
    if host.taints:
        config["node-taint"] = list(host.taints)
    config.update(_token_keys(inventory, host, tokens))
    if host != inventory.first_server:
        config["server"] = server_url(inventory)
    if server:
        config["disable"] = sorted({*as_list(config.get("disable")), "servicelb"})
        sans = {*as_list(config.get("tls-san")), str(host.address), inventory.api_host}
        config["tls-san"] = sorted(sans)
        config["write-kubeconfig-mode"] = "0600"
        if host == inventory.first_server and len(inventory.servers) > 1:
            config["cluster-init"] = True
        if inventory.registries and inventory.registries.embedded_mirror:
            config["embedded-registry"] = True  # docs.k3s.io/installation/registry-mirror: a server flag
        if len(inventory.servers) > 1:  # embedded etcd: scheduled on-site snapshots, unless serverConfig sets them
            config = {**SNAPSHOT_SCHEDULE, **config}
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)
