"""The k3s layout on a host (paths, units, release assets) and the config.yaml the kit renders per role."""
from __future__ import annotations

from dataclasses import dataclass

import yaml

from edge_hosts.inventory import Host, Inventory

BIN = "/usr/local/bin/k3s"
INSTALL_SCRIPT = "/usr/local/bin/k3s-install.sh"
CONFIG = "/etc/rancher/k3s/config.yaml"
REGISTRIES = "/etc/rancher/k3s/registries.yaml"  # read by k3s at start (docs.k3s.io/installation/private-registry)
# both written by a server in the full form K10<CA hash>::<user>:<password> (docs.k3s.io/cli/token)
TOKEN_FILE = "/var/lib/rancher/k3s/server/token"
AGENT_TOKEN_FILE = "/var/lib/rancher/k3s/server/agent-token"
NODE_PASSWORD_FILE = "/etc/rancher/node/password"  # a node's own password; servers keep its hash per node name
SNAPSHOT_DIR = "/var/lib/rancher/k3s/server/db/snapshots"
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
CRI_NAMESPACE = "k8s.io"  # containerd namespace of the images Kubernetes runs
PINNED_LABELS = "io.cri-containerd.pinned=pinned io.cattle.k3s.pinned=pinned"  # as k3s labels its airgap imports
METALLB_IMAGES = ("quay.io/metallb/controller", "quay.io/metallb/speaker")
API_PORT = 6443
# inventory arch -> k3s release naming
RELEASE_ARCH = {"x86_64": "amd64", "arm64": "arm64", "armv7": "arm"}
BINARY_ASSET = {"x86_64": "k3s", "arm64": "k3s-arm64", "armv7": "k3s-armhf"}
# inventory arch -> container image platform (architecture, variant)
IMAGE_PLATFORM = {"x86_64": ("amd64", ""), "arm64": ("arm64", ""), "armv7": ("arm", "v7")}
SERVER_PORTS = (6443, 10250, 2379, 2380)
# the kit's on-site etcd snapshots: every 6 hours, two days kept (k3s's own default is 0 */12 * * * and 5:
# docs.k3s.io/cli/etcd-snapshot, flags etcd-snapshot-schedule-cron and etcd-snapshot-retention)
SNAPSHOT_SCHEDULE = {"etcd-snapshot-schedule-cron": "0 */6 * * *", "etcd-snapshot-retention": 8}
AGENT_PORTS = (10250,)


def unit(role: str) -> str:
    return "k3s" if role == "server" else "k3s-agent"


def images_asset(arch: str) -> str:
    return f"k3s-airgap-images-{RELEASE_ARCH[arch]}.tar.zst"


def images_path(arch: str) -> str:
    return f"{IMAGES_DIR}/{images_asset(arch)}"


def metallb_images_asset(arch: str) -> str:
    """The bundle's archive of the MetalLB controller and speaker images for one arch."""
    return f"metallb-images-{RELEASE_ARCH[arch]}.tar"


def metallb_images_path(arch: str) -> str:
    return f"{IMAGES_DIR}/{metallb_images_asset(arch)}"


# k3s applies every manifest in this directory of a server and re-applies a file when it changes
# (docs.k3s.io/installation/packaged-components "Auto-Deploying Manifests (AddOns)")
AUTO_DEPLOY_DIR = "/var/lib/rancher/k3s/server/manifests"
FLUX_OPERATOR_MANIFEST = f"{AUTO_DEPLOY_DIR}/flux-operator.yaml"  # the Flux Operator release's install.yaml
FLEET_MANIFEST = f"{AUTO_DEPLOY_DIR}/mlops-fleet.yaml"  # fleet/onsite.py: FluxInstance, Secrets, the site's Flux


def flux_images_asset(arch: str) -> str:
    """The bundle's archive of the Flux Operator and controller images for one arch."""
    return f"flux-images-{RELEASE_ARCH[arch]}.tar"


def flux_images_path(arch: str) -> str:
    return f"{IMAGES_DIR}/{flux_images_asset(arch)}"


def checksum_asset(arch: str) -> str:
    return f"sha256sum-{RELEASE_ARCH[arch]}.txt"


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


def as_list(value) -> list:
    """A list flag given as a YAML list or one comma-separated string."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
