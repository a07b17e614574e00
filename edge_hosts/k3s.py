"""The k3s layout on a host (paths, units, release assets) and the config.yaml the kit renders per role."""
from __future__ import annotations

import yaml

from edge_hosts.inventory import Host, Inventory

BIN = "/usr/local/bin/k3s"
INSTALL_SCRIPT = "/usr/local/bin/k3s-install.sh"
CONFIG = "/etc/rancher/k3s/config.yaml"
TOKEN_FILE = "/var/lib/rancher/k3s/server/token"
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
CRI_NAMESPACE = "k8s.io"  # containerd namespace of the images Kubernetes runs
API_PORT = 6443
# inventory arch -> k3s release naming
RELEASE_ARCH = {"x86_64": "amd64", "arm64": "arm64", "armv7": "arm"}
BINARY_ASSET = {"x86_64": "k3s", "arm64": "k3s-arm64", "armv7": "k3s-armhf"}
# inventory arch -> container image platform (architecture, variant)
IMAGE_PLATFORM = {"x86_64": ("amd64", ""), "arm64": ("arm64", ""), "armv7": ("arm", "v7")}
SERVER_PORTS = (6443, 10250, 2379, 2380)
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


def checksum_asset(arch: str) -> str:
    return f"sha256sum-{RELEASE_ARCH[arch]}.txt"


def server_url(inventory: Inventory) -> str:
    return f"https://{inventory.first_server.address}:{API_PORT}"


def render_config(inventory: Inventory, host: Host, token: str | None) -> str:
    """config.yaml for a host: the inventory's extra entries, then the kit's own keys (which win)."""
    server = host.role == "server"
    config = dict(inventory.k3s.server_config if server else inventory.k3s.agent_config)
    config["node-name"] = host.name
    config["node-ip"] = str(host.address)
    if host.labels:
        config["node-label"] = [f"{k}={v}" for k, v in sorted(host.labels.items())]
    if host.taints:
        config["node-taint"] = list(host.taints)
    if token:
        config["token"] = token
    if host != inventory.first_server:
        config["server"] = server_url(inventory)
    if server:
        config["disable"] = sorted({*config.get("disable", []), "servicelb"})
        config["tls-san"] = sorted({*config.get("tls-san", []), str(host.address)})
        config["write-kubeconfig-mode"] = "0600"
        if host == inventory.first_server and len(inventory.servers) > 1:
            config["cluster-init"] = True
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)
