"""What a site's first server needs for fleet delivery, as one k3s auto-deploy manifest the edge bootstrap can
write: the FluxInstance (the Flux Operator installs Flux from the manifests embedded in its image, the
air-gapped setting), the site's two Secrets and its Flux objects (fleet.render's flux.yaml).

k3s applies every .yaml in AUTO_DEPLOY_DIR in path order and retries a file whose apply failed every 15 s
(k3s pkg/deploy/controller.go: listFilesIn, modTime recorded only on success), so objects whose CRDs the
operator has not installed yet are applied on a later pass. The file holds the site's registry token: 0600.

The Flux Operator's own install manifest goes beside it (edge_hosts/steps/fleet.py); the images the operator
deploys travel in the air-gap bundle (edge.bundle), the controllers by the digests of FLUX_IMAGES.

Behind a site proxy the controllers get HTTPS_PROXY, HTTP_PROXY and NO_PROXY from Secret PROXY_SECRET through a
FluxInstance patch of their Deployments (spec.kustomize.patches, the operator's documented way:
docs/guides/instance/instance-customization.md "HTTP/S Proxy"); envFrom keeps a proxy password out of the
FluxInstance and the Deployments.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml

from common.files import atomic_write
from common import k3s
from fleet import flux

AUTO_DEPLOY_DIR = Path(k3s.AUTO_DEPLOY_DIR)
MANIFEST_NAME = Path(k3s.FLEET_MANIFEST).name
# Flux v2.9.4 controllers as the Flux Operator v0.58.1 deploys them
# (controlplaneio-fluxcd/flux-operator config/data/flux-images/v2.9.4/upstream-alpine.yaml).
FLUX_IMAGES = {
    "ghcr.io/fluxcd/source-controller:v1.9.4":
        "sha256:8a8ed0a57b8b86f561d5a4309a69f65e62f0cebe4de8801593c5ff35a3bc3c23",
    "ghcr.io/fluxcd/kustomize-controller:v1.9.4":
        "sha256:2b8bec54ffb6caf421bd2a6c005d27f567d5dd4db7feb55794fb51fcabd69b8f",
    "ghcr.io/fluxcd/notification-controller:v1.9.3":
        "sha256:071c351a0fb163eeb6a2bb82f1e894f51b6b0734216d2e97d3d99c9ab9d710b9",
}
PROXY_SECRET = "fleet-proxy"
# in-cluster names the controllers reach directly (notification-controller's and source-controller's Services;
# the operator's documented NO_PROXY for Flux)
CLUSTER_NO_PROXY = (".cluster.local.", ".cluster.local", ".svc")
# the image install.yaml's Deployment runs, by tag (config/manager/kustomization.yaml images: newTag v0.58.1)
OPERATOR_IMAGE = "ghcr.io/controlplaneio-fluxcd/flux-operator:" + flux.FLUX_OPERATOR_VERSION


def image_references(operator_digest: str, images: dict[str, str] = FLUX_IMAGES) -> list[str]:
    """name:tag@digest of every image a site's Flux runs: the operator (its digest given when the bundle is built:
    the release publishes none in the repository) and the controllers it deploys."""
    return [f"{OPERATOR_IMAGE}@{operator_digest}", *(f"{name}@{digest}" for name, digest in images.items())]


def image_names() -> list[str]:
    """The names those images are imported and pinned under (the controllers' deployments ask for
    name:tag@digest, which containerd resolves by the digest)."""
    return [OPERATOR_IMAGE, *FLUX_IMAGES]


def flux_instance(proxied: bool = False) -> dict:
    """Flux 2.9.4 with the three controllers fleet delivery uses, from the operator's embedded manifests; proxied:
    every controller's container (`manager`) takes its environment from Secret PROXY_SECRET too."""
    spec = {"distribution": {"version": flux.FLUX_VERSION.removeprefix("v"), "registry": "ghcr.io/fluxcd"},
            "components": ["source-controller", "kustomize-controller", "notification-controller"],
            "cluster": {"type": "kubernetes", "networkPolicy": True}}
    if proxied:
        manager = {"name": "manager", "envFrom": [{"secretRef": {"name": PROXY_SECRET}}]}
        patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "all"},
                 "spec": {"template": {"spec": {"containers": [manager]}}}}
        spec["kustomize"] = {"patches": [{"patch": yaml.safe_dump(patch, sort_keys=True),
                                          "target": {"kind": "Deployment"}}]}
    return {"apiVersion": "fluxcd.controlplane.io/v1", "kind": "FluxInstance",
            "metadata": {"name": "flux", "namespace": flux.NAMESPACE}, "spec": spec}


def proxy_secret(variables: dict[str, str]) -> dict:
    """The controllers' proxy environment (the site's HTTP_PROXY/HTTPS_PROXY/NO_PROXY, NO_PROXY extended by
    CLUSTER_NO_PROXY)."""
    no_proxy = [*filter(None, variables.get("NO_PROXY", "").split(",")), *CLUSTER_NO_PROXY]
    env = variables | {"NO_PROXY": ",".join(dict.fromkeys(no_proxy))}
    return _secret(PROXY_SECRET, "Opaque", {k: v.encode() for k, v in sorted(env.items())})


def _secret(name: str, secret_type: str, data: dict[str, bytes]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": flux.NAMESPACE},
            "type": secret_type, "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def site_secrets(registry: str, user: str, token: str, notify_token: str, notify_address: str = "") -> list[dict]:
    """The site's pull credential (its own repository only) and the notification secret (`token` for azuredevops
    and generic-hmac, `address` for the generic types)."""
    auth = base64.b64encode(f"{user}:{token}".encode()).decode()
    config = json.dumps({"auths": {registry: {"username": user, "password": token, "auth": auth}}}).encode()
    notify = ({"token": notify_token.encode()} if notify_token else {}) | (
        {"address": notify_address.encode()} if notify_address else {})
    return [_secret(flux.PULL_SECRET, "kubernetes.io/dockerconfigjson", {".dockerconfigjson": config}),
            _secret(flux.NOTIFY_SECRET, "Opaque", notify)]


def auto_deploy_manifest(flux_objects: list[dict], secrets: list[dict]) -> str:
    """Namespace, FluxInstance (proxied when the secrets hold PROXY_SECRET), Secrets, then the site's Flux
    objects, as one multi-document YAML."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": flux.NAMESPACE}}
    instance = flux_instance(any(s["metadata"]["name"] == PROXY_SECRET for s in secrets))
    return yaml.safe_dump_all([namespace, instance, *secrets, *flux_objects], sort_keys=True)


def write_auto_deploy(folder: Path, text: str) -> Path:
    """folder/MANIFEST_NAME, private from the start (0600), replaced in one rename."""
    path = folder / MANIFEST_NAME
    atomic_write(path, text, 0o600)
    return path
