"""k3s facts the kit relies on, shared by edge_hosts and fleet: paths and units on a host, ports, release
assets and image archives, the auto-deploy manifests directory (install.sh, docs.k3s.io). Data only: no inventory."""
from __future__ import annotations


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
# The site's one MetalLB IPAddressPool and L2Advertisement (namespace metallb-system): the edge bootstrap creates
# them from the inventory and a fleet release carries the same objects, since MetalLB's webhook refuses a second
# pool with an overlapping range (v0.16.1 internal/config/config.go, "overlaps with already defined CIDR").
METALLB_POOL = "mlops-edge-kit"
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


def as_list(value) -> list:
    """A list flag given as a YAML list or one comma-separated string."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
