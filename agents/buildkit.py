"""Rootless BuildKit per architecture, in its own namespace, scaled with the agents' queue (down to zero).

BuildKit needs Unconfined seccomp and AppArmor, which Pod Security "baseline" and "restricted" forbid: it runs
in a namespace of its own, so the agents' namespace can enforce "restricted". A KEDA ScaledObject on the same
azure-pipelines trigger as the agents scales each builder between 0 and 1 replica: with no queued or running
job, no builder keeps an x86 or arm64 node up (KEDA scales 0 <-> 1 itself, the HPA above that;
https://keda.sh/docs/2.20/reference/scaledobject-spec/).
"""
from dataclasses import dataclass

from agents.podspec import (egress_dns_and_https, exec_probe, not_on_system_nodes, pods_in, queue_trigger,
                            tolerations)
from agents.settings import AgentsSettings, ArchPool

BUILDKIT_UID = 1000  # fixed by the moby/buildkit rootless image
BUILDKIT_PORT = 1234
RUNTIME_DIR = f"/run/user/{BUILDKIT_UID}"
# The rootless image's writable paths (its Dockerfile: XDG_RUNTIME_DIR, TMPDIR, the state VOLUME), each an
# emptyDir under a read-only root: name -> (mount path, size limit).
WRITABLE = {"state": ("/home/user/.local/share/buildkit", "20Gi"), "runtime": (RUNTIME_DIR, "64Mi"),
            "tmp": ("/home/user/.local/tmp", "1Gi")}
# What rootless BuildKit needs and the scanner (checkov) reports, each with why, as its skip annotations
# (checkov.io/skipN: ID=reason; a reason holds no '='). Sources: moby/buildkit v0.33.0 docs/rootless.md and
# its Dockerfile's rootless stage.
SCANNER_SKIPS = {
    "CKV_K8S_20": "rootlesskit maps the build's users with the setuid newuidmap/newgidmap, "
                  "which no_new_privs (allowPrivilegeEscalation false) would stop",
    "CKV_K8S_25": "SETUID and SETGID stay (all else is dropped): newuidmap/newgidmap set the build's "
                  "ID maps with them and fail with 'Could not set caps' without (moby/buildkit#3217)",
    "CKV_K8S_31": "rootless BuildKit needs seccomp Unconfined for unshare and mount "
                  "(docs/rootless.md); it runs in its own namespace, apart from the agents",
    "CKV_K8S_40": "UID 1000 is fixed by the moby/buildkit rootless image and its /etc/subuid range; "
                  "another UID needs a rebuilt image (docs/rootless.md, Change UID/GID)",
}


def scanner_annotations() -> dict[str, str]:
    """SCANNER_SKIPS as checkov's documented skip annotations on the Deployment."""
    return {f"checkov.io/skip{n}": f"{check}={reason}" for n, (check, reason) in enumerate(SCANNER_SKIPS.items(), 1)}
# Seconds without a queued or running job before a builder scales to zero (KEDA's default cooldownPeriod).
IDLE_SECONDS = 300


def buildkit_labels(arch: str | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "buildkitd", "app.kubernetes.io/part-of": "mlops-edge-kit"}
    return labels | ({"mlops-edge-kit/arch": arch} if arch else {})


def buildkit_host(settings: AgentsSettings, arch: str) -> str:
    """What agents of this architecture set BUILDKIT_HOST to: the builder's Service in its namespace."""
    return f"tcp://buildkitd-{arch}.{settings.buildkit_namespace}:{BUILDKIT_PORT}"


@dataclass(frozen=True)
class BuilderArgs:
    """One architecture's builder: the settings, the pool it follows and the taints its nodes carry."""

    settings: AgentsSettings
    pool: ArchPool
    taints: tuple[str, ...] = ()


def deployment_spec(args: BuilderArgs) -> dict:
    """Rootless buildkitd, native to one architecture; its replicas are KEDA's (never set here).

    What rootless BuildKit allows is locked down (moby/buildkit docs/rootless.md and
    examples/kubernetes/deployment+service.rootless.yaml at v0.33.0): the image by digest, every capability
    dropped but SETUID/SETGID, a read-only root with the image's three writable paths as emptyDirs. What it
    needs stays, with the reason in SCANNER_SKIPS. --oci-worker-no-process-sandbox avoids needing a fresh
    /proc, so no privileged mode and no host paths are needed. `replicas` is left out: a value here would be
    re-applied on every `pulumi up` and stop a builder in the middle of a job.
    """
    arch = args.pool.arch
    labels = buildkit_labels(arch)
    container = {
        "name": "buildkitd", "image": args.settings.buildkit_image, "imagePullPolicy": "IfNotPresent",
        "args": ["--addr", f"unix://{RUNTIME_DIR}/buildkit/buildkitd.sock",
                 "--addr", f"tcp://0.0.0.0:{BUILDKIT_PORT}", "--oci-worker-no-process-sandbox"],
        "ports": [{"name": "buildkit", "containerPort": BUILDKIT_PORT, "protocol": "TCP"}],
        "securityContext": container_security(),
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        "readinessProbe": exec_probe(["buildctl", "debug", "workers"], period=10, failures=3),
        "livenessProbe": exec_probe(["buildctl", "debug", "workers"], period=30, failures=3),
        "volumeMounts": [{"name": name, "mountPath": path} for name, (path, _) in WRITABLE.items()],
    }
    return {
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {
            "automountServiceAccountToken": False, "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": BUILDKIT_UID, "runAsGroup": BUILDKIT_UID,
                                "fsGroup": BUILDKIT_UID},
            "nodeSelector": {"kubernetes.io/arch": arch, "kubernetes.io/os": "linux"},
            "tolerations": tolerations(args.taints), "affinity": not_on_system_nodes(),
            "containers": [container],
            "volumes": [{"name": name, "emptyDir": {"sizeLimit": size}} for name, (_, size) in WRITABLE.items()]}},
    }


def container_security() -> dict:
    """Rootless BuildKit's container security: only what docs/rootless.md says it needs is kept."""
    return {"runAsNonRoot": True, "runAsUser": BUILDKIT_UID, "runAsGroup": BUILDKIT_UID,
            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": True,
            "capabilities": {"drop": ["ALL"], "add": ["SETGID", "SETUID"]},
            "seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"}}


def service_spec(arch: str) -> dict:
    return {"type": "ClusterIP", "selector": buildkit_labels(arch), "ports": [
        {"name": "buildkit", "port": BUILDKIT_PORT, "targetPort": BUILDKIT_PORT, "protocol": "TCP"}]}


def scaled_object_spec(args: BuilderArgs) -> dict:
    """KEDA ScaledObject: the builder runs while its pool has a queued or running job, else zero replicas."""
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"buildkitd-{args.pool.arch}"},
        "pollingInterval": args.settings.polling_interval_seconds, "cooldownPeriod": IDLE_SECONDS,
        "minReplicaCount": 0, "maxReplicaCount": 1,
        "triggers": [queue_trigger(args.pool.pool_name, args.pool.arch)],
    }


def network_policy(settings: AgentsSettings, agent_labels: dict[str, str]) -> dict:
    """Builders are reached only by the agents (from their namespace); they fetch over HTTP(S)."""
    return {"podSelector": {"matchLabels": buildkit_labels()}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [pods_in(settings.namespace, agent_labels)],
                         "ports": [{"protocol": "TCP", "port": BUILDKIT_PORT}]}],
            "egress": egress_dns_and_https() + [{"ports": [{"protocol": "TCP", "port": 80}]}]}


def agents_to_builders(settings: AgentsSettings) -> dict:
    """The agents' egress rule to the builders in their namespace."""
    return {"to": [pods_in(settings.buildkit_namespace, buildkit_labels())],
            "ports": [{"protocol": "TCP", "port": BUILDKIT_PORT}]}
