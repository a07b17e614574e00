"""The Flux objects each site runs: where its desired state comes from, how it is applied, how it reports.

Versions pinned (read from upstream at these tags):
- Flux v2.9.4 (fluxcd/flux2 tag v2.9.4, 2026-08-07): source-controller v1.9.4, kustomize-controller v1.9.4,
  notification-controller v1.9.3 (manifests/bases/*/kustomization.yaml), fluxcd/pkg/oci v0.68.1 (go.mod).
- Flux Operator v0.58.1 (controlplaneio-fluxcd/flux-operator tag v0.58.1, 2026-08-19).
Flux v2.9.4 needs Kubernetes >= 1.33 (cmd/flux/check.go kubernetesConstraints).

A site follows the tag LIVE_TAG of its own repository, but only inside its maintenance windows: a
ResourceSetInputProvider (type OCIArtifactTag) resolves that tag's digest on its schedule only
(docs/api/v1/resourcesetinputprovider.md, "Schedule"), and a ResourceSet renders the OCIRepository pinned to
that digest. The Kustomization keeps applying the pinned artifact at its own interval, so drift is corrected
outside the windows too.

A scheduled provider created outside its window exports nothing until the window opens (v0.58.1
internal/controller/resourcesetinputprovider_controller.go: "Reconciliation skipped, next scheduled at", Ready
with no inputs), and a ResourceSet whose providers export nothing applies nothing. So a second provider,
NOW_PROVIDER, resolves the same tag at any time, and the ResourceSet combines both with the Permute strategy
(each provider's input under its normalized name, a provider with no inputs skipped: docs/api/v1/resourceset.md
"Input strategy"): the digest is the scheduled one once the site had a window, the current one before.

A revert or hold must reach a site outside its window, while its scheduled provider still holds the release it
resolved in its last window. So a third provider, PIN_PROVIDER, resolves tag PIN_TAG at any time, and the
promotion writes that tag (before `live`) when it moves a site back: a site whose scheduled digest is not the
current `live` runs its pin when it has one (DIGEST_TEMPLATE). A pin needs no removal: once the site's window
resolved `live` again, the scheduled digest is `live` and the pin is ignored.
"""
from __future__ import annotations

import math

FLUX_VERSION = "v2.9.4"
FLUX_OPERATOR_VERSION = "v0.58.1"

# fluxcd/pkg oci/constants.go (oci/v0.68.1): the media types `flux push artifact` writes and the annotations
# source-controller copies into the artifact's metadata (ocirepository_controller.go: metadata = manifest
# annotations); kustomize-controller sends org.opencontainers.image.revision as the event's originRevision,
# which the azuredevops notifier uses as the commit to set a status on (internal/notifier/azure_devops.go).
CONFIG_MEDIA_TYPE = "application/vnd.cncf.flux.config.v1+json"
CONTENT_MEDIA_TYPE = "application/vnd.cncf.flux.content.v1.tar+gzip"
SOURCE_ANNOTATION = "org.opencontainers.image.source"
REVISION_ANNOTATION = "org.opencontainers.image.revision"
CREATED_ANNOTATION = "org.opencontainers.image.created"
# `flux push artifact --reproducible` sets created to the Unix epoch (cmd/flux/push_artifact.go, v2.9.4)
REPRODUCIBLE_CREATED = "1970-01-01T00:00:00Z"

NAMESPACE = "flux-system"
LIVE_TAG = "live"
PULL_SECRET = "fleet-registry"      # kubernetes.io/dockerconfigjson, the site's own token (made at bootstrap)
NOTIFY_SECRET = "fleet-notify"      # `token` (azuredevops) or `address` (generic) key
NOTIFY_CA_SECRET = "fleet-notify-ca"  # ca.crt: the CA of the kit's receiver (Provider certSecretRef)
KEY_GENERATION = "fleet.mlops-edge-kit/key-generation"  # the Provider's annotation: its site key's generation
SITE_OBJECT = "site"                # name of the OCIRepository, Kustomization, ResourceSet, scheduled provider
NOW_PROVIDER = "site-now"           # the unscheduled provider of LIVE_TAG (template key site_now)
PIN_PROVIDER = "site-pin"           # the unscheduled provider of PIN_TAG (template key site_pin)
PIN_TAG = "pin"                     # what a site moved back runs until its window resolves `live` again
# Annotations with this prefix on a Flux object travel as metadata of each of its events, the prefix removed
# (Flux RFC-0008, in Flux since v2.5): the OCIRepository's error events carry no revision, and a failed
# layer pull names the layer, so the pinned digest goes with every event under the key `digest`.
EVENT_DIGEST_ANNOTATION = "event.toolkit.fluxcd.io/digest"
HOLD_PREFIX = "hold-"               # hold-<release>: the release with its workloads scaled to zero
HEALTH_TIMEOUT_S = 300              # the Kustomization's timeout without a model pull to wait for
OPERATOR_TIMEOUT = "2m"             # fluxcd.controlplane.io/reconcileTimeout; a window must be >= twice it
WINDOW_POLL = "5m"                  # fluxcd.controlplane.io/reconcileEvery inside a window


def repository_path(env: str, site: str) -> str:
    """The site's own repository in the env's registry (its token pulls this one only)."""
    return f"fleet/{env}/{site}"


def repository(registry: str, env: str, site: str) -> str:
    return f"{registry}/{repository_path(env, site)}"


def _meta(name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict:
    meta = {"name": name, "namespace": NAMESPACE, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = annotations
    return meta


def input_provider(site, env, labels: dict[str, str], name: str = SITE_OBJECT, scheduled: bool = True,
                   tag: str = LIVE_TAG) -> dict:
    """Resolves the digest of the site's tag: inside the site's windows only when scheduled (no windows: at any
    time), else at any time. No such tag: no input (internal/controller: the filtered tag list is empty)."""
    spec = {"type": "OCIArtifactTag", "url": f"oci://{repository(env.registry, env.name, site.name)}",
            "secretRef": {"name": PULL_SECRET}, "filter": {"includeTag": f"^{tag}$", "limit": 1}}
    if env.insecure:
        spec["insecure"] = True
    if scheduled and site.windows:
        spec["schedule"] = [{"cron": w.cron, "timeZone": w.time_zone, "window": w.duration} for w in site.windows]
    annotations = {"fluxcd.controlplane.io/reconcileEvery": WINDOW_POLL,
                   "fluxcd.controlplane.io/reconcileTimeout": OPERATOR_TIMEOUT}
    return {"apiVersion": "fluxcd.controlplane.io/v1", "kind": "ResourceSetInputProvider",
            "metadata": _meta(name, labels, annotations), "spec": spec}


def _key(provider: str) -> str:
    """The provider's key in a Permute input set (internal/inputs/keys.go NormalizeKeyForTemplate, for the
    kit's names: lowercase letters, digits and '-')."""
    return provider.replace("-", "_")


def _digest(provider: str) -> str:
    return f'(dig "{_key(provider)}" "digest" "" inputs)'


# The digest the ResourceSet pins (Go template, sprig's dig and coalesce), with S the scheduled provider's, N the
# current live one's and P the pin's: N when S is missing (a site that never applied a release) or S is N; else
# P when there is one (moved back outside its window), else S (waiting for its window).
DIGEST_TEMPLATE = (f"<< $s := {_digest(SITE_OBJECT)} >><< $n := {_digest(NOW_PROVIDER)} >>"
                   f"<< if and $s (ne $s $n) >><< coalesce {_digest(PIN_PROVIDER)} $s >>"
                   "<< else >><< coalesce $n $s >><< end >>")
PROVIDERS = (SITE_OBJECT, NOW_PROVIDER, PIN_PROVIDER)


def oci_repository(site, env, labels: dict[str, str], digest: str) -> dict:
    """The site's source, pinned to one digest (the ResourceSet fills it from the input provider)."""
    spec = {"interval": "10m", "timeout": "2m", "url": f"oci://{repository(env.registry, env.name, site.name)}",
            "ref": {"digest": digest}, "secretRef": {"name": PULL_SECRET},
            "layerSelector": {"mediaType": CONTENT_MEDIA_TYPE, "operation": "extract"}}
    if env.insecure:
        spec["insecure"] = True
    return {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
            "metadata": _meta(SITE_OBJECT, labels, {EVENT_DIGEST_ANNOTATION: digest}), "spec": spec}


def resource_set(site, env, labels: dict[str, str]) -> dict:
    """Renders the OCIRepository with the digest DIGEST_TEMPLATE picks from the providers' inputs."""
    return {"apiVersion": "fluxcd.controlplane.io/v1", "kind": "ResourceSet",
            "metadata": _meta(SITE_OBJECT, labels),
            "spec": {"inputStrategy": {"name": "Permute"},
                     "inputsFrom": [{"kind": "ResourceSetInputProvider", "name": name} for name in PROVIDERS],
                     "resources": [oci_repository(site, env, labels, DIGEST_TEMPLATE)]}}


def health_timeout(site, model_bytes: int) -> str:
    """The Kustomization's timeout (apply and health checks): HEALTH_TIMEOUT_S, plus twice the model's pull
    over the site's link (linkMbps): the pods are healthy only once kubelet pulled the model's image volume."""
    if not site.link_mbps or not model_bytes:
        return f"{HEALTH_TIMEOUT_S // 60}m"
    return f"{HEALTH_TIMEOUT_S + math.ceil(2 * model_bytes * 8 / (site.link_mbps * 1e6))}s"


def kustomization(labels: dict[str, str], health_checks: list[dict], timeout: str = "5m") -> dict:
    """Applies the artifact (plain YAML: kustomize-controller generates the kustomization), waits for health."""
    spec = {"interval": "10m", "retryInterval": "2m", "timeout": timeout, "path": "./", "prune": True,
            "sourceRef": {"kind": "OCIRepository", "name": SITE_OBJECT}, "healthChecks": health_checks}
    return {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": _meta(SITE_OBJECT, labels), "spec": spec}


def provider(env, labels: dict[str, str], site: str = "") -> dict:
    """azuredevops: a commit status on the artifact's origin revision; generic: the event JSON POSTed;
    generic-hmac: to the kit's receiver at the site's own path, signed with the site's own key (the bootstrap
    derives it for KEY_GENERATION: fleet/receiving/keys.py), the receiver's CA in NOTIFY_CA_SECRET."""
    spec, annotations = {"type": env.notify_type, "secretRef": {"name": NOTIFY_SECRET}}, None
    if env.notify_type == "azuredevops":
        spec["address"] = env.notify_address
    if env.receiver is not None:
        spec["address"] = f"{env.receiver.address}/sites/{env.name}/{site}"
        annotations = {KEY_GENERATION: str(env.receiver.key_generation)}
        if env.receiver.ca:
            spec["certSecretRef"] = {"name": NOTIFY_CA_SECRET}  # ca.crt only: server authentication
    return {"apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
            "metadata": _meta("fleet", labels, annotations), "spec": spec}


def notify_ca(env, labels: dict[str, str]) -> list[dict]:
    """The receiver's CA certificate (public) for the Provider's certSecretRef, when the seeds give one."""
    if env.receiver is None or not env.receiver.ca:
        return []
    return [{"apiVersion": "v1", "kind": "Secret", "metadata": _meta(NOTIFY_CA_SECRET, labels), "type": "Opaque",
             "stringData": {"ca.crt": env.receiver.ca}}]


def alert(site, env, labels: dict[str, str]) -> dict:
    """Every event of the site's source and Kustomization, tagged with the site and env it came from."""
    sources = [{"kind": kind, "name": SITE_OBJECT} for kind in ("OCIRepository", "Kustomization")]
    spec = {"providerRef": {"name": "fleet"}, "eventSeverity": "info", "eventSources": sources,
            "eventMetadata": {"site": site.name, "env": env.name}}
    return {"apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
            "metadata": _meta("fleet", labels), "spec": spec}


def site_objects(site, env, health_checks: list[dict], model_bytes: int = 0) -> list[dict]:
    """Every Flux object of one site, in apply order."""
    labels = {"app.kubernetes.io/managed-by": "mlops-edge-kit", "fleet.mlops-edge-kit/site": site.name}
    return [input_provider(site, env, labels), input_provider(site, env, labels, NOW_PROVIDER, scheduled=False),
            input_provider(site, env, labels, PIN_PROVIDER, scheduled=False, tag=PIN_TAG),
            resource_set(site, env, labels),
            kustomization(labels, health_checks, health_timeout(site, model_bytes)), *notify_ca(env, labels),
            provider(env, labels, site.name), alert(site, env, labels)]
