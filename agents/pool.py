"""AgentPool: self-hosted Azure Pipelines agents on one Kubernetes cluster (AKS or an edge k3s site).

Every object carries an explicit name and namespace, so the offline plan can write it as a manifest.
"""
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from agents import buildkit
from agents.placeholder import PlaceholderAgent
from agents.podspec import (capabilities, egress_dns_and_https, exec_probe, not_on_system_nodes, queue_trigger,
                            tolerations)
from agents.settings import AgentsSettings, ArchPool

KEDA_CHART_REPO = "https://kedacore.github.io/charts"
KEDA_NAMESPACE = "keda"
AGENT_UID = 10001
K3S_API_PORT = 6443
TOKEN_DIR = "/var/run/secrets/azp"
HANDOFF_DIR = "/azp/credential"  # in-memory emptyDir: the credential's copy, deleted by the entrypoint at start
PROBE = "/usr/local/bin/azp-probe"
POD_SECURITY = "pod-security.kubernetes.io"
# Agents meet "restricted", so their namespace enforces it. BuildKit needs Unconfined seccomp and AppArmor,
# which even "baseline" forbids: its namespace says "privileged" explicitly (a cluster default cannot block it).
RESTRICTED = {f"{POD_SECURITY}/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
PRIVILEGED = {f"{POD_SECURITY}/enforce": "privileged"}


@dataclass(frozen=True)
class AgentPoolArgs:
    """What one cluster's agents need: shared settings, this cluster's pools and the credential."""

    settings: AgentsSettings
    pools: Sequence[ArchPool]
    install_keda: bool
    registry_login_server: pulumi.Input[str]
    placeholder_token: pulumi.Input[str]
    credential: pulumi.Input[str] | None = None
    pool_taints: Mapping[str, Sequence[str]] = field(default_factory=dict)
    pools_ready: pulumi.Input[object] | None = None  # resolves once the Azure DevOps pools exist, when the stack makes them


def after(ready: pulumi.Input[object] | None, value: str) -> pulumi.Input[str]:
    """`value`, but only once `ready` resolves: a dependency carried by the input itself."""
    return value if ready is None else pulumi.Output.all(ready, value).apply(lambda both: both[1])


def agent_labels(arch: str | None = None) -> dict[str, str]:
    """Labels of agent pods (all of them, or one architecture's)."""
    labels = {"app.kubernetes.io/name": "azp-agent", "app.kubernetes.io/part-of": "mlops-edge-kit"}
    return labels | ({"mlops-edge-kit/arch": arch} if arch else {})


def restricted_container_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": AGENT_UID, "runAsGroup": AGENT_UID, "privileged": False,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def agent_env(settings: AgentsSettings, pool: ArchPool) -> list[dict]:
    env = {"AZP_URL": settings.organization_url, "AZP_POOL": pool.pool_name, "AZP_AUTH": settings.auth.mode,
           "AZP_WORK": "/azp/work", "BUILDKIT_HOST": buildkit.buildkit_host(settings, pool.arch)}
    if settings.auth.mode != "workload-identity":
        env["AZP_TOKEN_FILE"] = f"{HANDOFF_DIR}/token"
    if settings.auth.mode != "pat":
        env |= {"AZP_CLIENT_ID": str(settings.auth.client_id), "AZP_TENANT_ID": str(settings.auth.tenant_id)}
    pod_name = {"name": "AZP_AGENT_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    return [pod_name] + [{"name": key, "value": value} for key, value in env.items()]


def agent_pod_template(args: AgentPoolArgs, pool: ArchPool, image: pulumi.Input[str]) -> dict:
    """The pod of one agent: one job, non-root, read-only root, drained within the job timeout."""
    settings, resources = args.settings, pool.resources
    uses_secret = settings.auth.mode != "workload-identity"
    mounts = [{"name": "work", "mountPath": "/azp/work"}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes = [{"name": "work", "emptyDir": {}}, {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    if uses_secret:
        mounts.append({"name": "azp-credential-handoff", "mountPath": HANDOFF_DIR})
        volumes += [{"name": "azp-credential", "secret": {
            "secretName": "azp-credential", "defaultMode": 0o400, "items": [{"key": "token", "path": "token"}]}},
            {"name": "azp-credential-handoff", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    labels = agent_labels(pool.arch) | (
        {"azure.workload.identity/use": "true"} if settings.auth.mode == "workload-identity" else {})
    container = {
        "name": "agent", "image": image, "imagePullPolicy": "IfNotPresent", "env": agent_env(settings, pool),
        "resources": {"requests": {"cpu": resources.cpu_request, "memory": resources.memory_request},
                      "limits": {"cpu": resources.cpu_limit, "memory": resources.memory_limit}},
        "securityContext": restricted_container_security(), "volumeMounts": mounts,
        "startupProbe": exec_probe([PROBE, "live"], period=5, failures=60),
        "livenessProbe": exec_probe([PROBE, "live"], period=30, failures=3),
        "readinessProbe": exec_probe([PROBE, "ready"], period=10, failures=3),
    }
    return {
        "metadata": {"labels": labels, "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}},
        "spec": {
            "serviceAccountName": "azp-agent", "automountServiceAccountToken": False, "enableServiceLinks": False,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": settings.job_timeout_minutes * 60 + 120,
            "securityContext": {"runAsNonRoot": True, "runAsUser": AGENT_UID, "runAsGroup": AGENT_UID,
                                "fsGroup": AGENT_UID, "seccompProfile": {"type": "RuntimeDefault"}},
            "nodeSelector": {"kubernetes.io/arch": pool.arch, "kubernetes.io/os": "linux"},
            "tolerations": tolerations(args.pool_taints.get(pool.arch, [])),
            "affinity": not_on_system_nodes(),
            "containers": [container], "volumes": volumes,
        } | ({"initContainers": [credential_handoff(image)]} if uses_secret else {}),
    }


def credential_handoff(image: pulumi.Input[str]) -> dict:
    """Init container: the only one that mounts the credential Secret (read-only, as Kubernetes mounts Secrets);
    it copies the token into the in-memory emptyDir, where the agent's entrypoint reads and deletes it before
    run.sh starts, so pipeline jobs (same UID, same fsGroup) never find it."""
    return {"name": "credential-handoff", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["cp", f"{TOKEN_DIR}/token", f"{HANDOFF_DIR}/token"],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}},
            "securityContext": restricted_container_security(),
            "volumeMounts": [{"name": "azp-credential", "mountPath": TOKEN_DIR, "readOnly": True},
                             {"name": "azp-credential-handoff", "mountPath": HANDOFF_DIR}]}


def scaled_job_spec(args: AgentPoolArgs, pool: ArchPool, image: pulumi.Input[str]) -> dict:
    """KEDA ScaledJob: one Job (one agent, one pipeline job) per queued job, down to zero pods."""
    return {
        "jobTargetRef": {"parallelism": 1, "completions": 1, "backoffLimit": 0,
                         "template": agent_pod_template(args, pool, image)},
        "pollingInterval": args.settings.polling_interval_seconds,
        "minReplicaCount": pool.min_replicas, "maxReplicaCount": pool.max_replicas,
        "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 5,
        # "gradual": an update never deletes Jobs that are running pipeline jobs.
        "rollout": {"strategy": "gradual"},
        # The queue length counts running jobs too, so "default" (queue minus running) is the right arithmetic.
        "scalingStrategy": {"strategy": "default"},
        "triggers": [queue_trigger(pool.pool_name, pool.arch)],
    }


def trigger_auth_spec(settings: AgentsSettings) -> dict:
    """How KEDA reads the queue: the PAT from the Secret, or Azure workload identity."""
    if settings.auth.mode == "pat":
        return {"secretTargetRef": [{"parameter": "personalAccessToken", "name": "azp-credential", "key": "token"}]}
    return {"podIdentity": {"provider": "azure-workload", "identityId": str(settings.auth.client_id)}}


def agent_network_policy(settings: AgentsSettings) -> dict:
    """No ingress; egress only to DNS, HTTPS (Azure DevOps, registries, AKS API), the k3s API server port
    (deploy jobs on edge sites) and the builders in their namespace."""
    k3s_api = {"ports": [{"protocol": "TCP", "port": K3S_API_PORT}]}
    return {"podSelector": {"matchLabels": agent_labels()}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [], "egress": egress_dns_and_https() + [k3s_api, buildkit.agents_to_builders(settings)]}


def keda_values(settings: AgentsSettings) -> dict:
    """Helm values: KEDA only on 64-bit nodes (it ships no armv7 image); workload identity unless a PAT is used."""
    on_64_bit = {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}
    values = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [on_64_bit]}]}}}}
    if settings.auth.mode == "pat":
        return values
    return values | {"podIdentity": {"azureWorkload": {"enabled": True, "clientId": str(settings.auth.client_id),
                                                       "tenantId": str(settings.auth.tenant_id)}}}


class AgentPool(pulumi.ComponentResource):
    """Namespace, credential, KEDA, one ScaledJob and placeholder agent per architecture, BuildKit, policies."""

    def __init__(self, name: str, args: AgentPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:agents:AgentPool", name, None, opts)
        self._name, self._args = name, args
        settings = args.settings
        self.namespace_name = settings.namespace
        child = pulumi.ResourceOptions(parent=self)
        keda = self._keda(child) if args.install_keda else []
        agents_ns = self._namespace("namespace", settings.namespace, RESTRICTED, child)
        builders_ns = self._namespace("buildkit-namespace", settings.buildkit_namespace, PRIVILEGED, child)
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[agents_ns])
        secret = self._credential(settings.namespace, "credential", args.credential, in_ns)
        self._service_account(in_ns)
        needs_keda = pulumi.ResourceOptions(parent=self, depends_on=[agents_ns, *secret, *keda])
        self._custom("trigger-auth", "TriggerAuthentication", "azp-trigger-auth",
                     trigger_auth_spec(settings), needs_keda)
        image = pulumi.Output.concat(args.registry_login_server, "/", settings.image.repository, ":",
                                     settings.image.tag)
        self.scaled_jobs = {pool.arch: self._custom(f"scaledjob-{pool.arch}", "ScaledJob", f"azp-agent-{pool.arch}",
                                                    scaled_job_spec(args, pool, image), needs_keda)
                            for pool in args.pools}
        for pool in args.pools:
            PlaceholderAgent(f"{name}-placeholder-{pool.arch}", organization_url=settings.organization_url,
                             pool_name=after(args.pools_ready, pool.pool_name), token=args.placeholder_token,
                             capabilities=capabilities(pool.arch), opts=child)
        self._builders(builders_ns, keda)
        self._policies(in_ns, pulumi.ResourceOptions(parent=self, depends_on=[builders_ns]))
        self.register_outputs({"namespace": self.namespace_name, "scaledJobs": sorted(self.scaled_jobs)})

    def _metadata(self, name: str, labels: dict | None = None, namespace: str | None = None) -> dict:
        return {"name": name, "namespace": namespace or self.namespace_name,
                "labels": {"app.kubernetes.io/part-of": "mlops-edge-kit"} | (labels or {})}

    def _namespace(self, suffix: str, name: str, labels: dict, opts: pulumi.ResourceOptions) -> k8s.core.v1.Namespace:
        return k8s.core.v1.Namespace(f"{self._name}-{suffix}", metadata={
            "name": name, "labels": {"app.kubernetes.io/part-of": "mlops-edge-kit"} | labels}, opts=opts)

    def _credential(self, namespace: str, suffix: str, credential: pulumi.Input[str] | None,
                    opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """The Secret agents (and KEDA, with a PAT) read the credential from; none with workload identity."""
        mode = self._args.settings.auth.mode
        if mode == "workload-identity":
            return []
        if credential is None:
            raise ValueError(f"auth mode {mode} needs a credential for the agents' Secret")
        return [k8s.core.v1.Secret(f"{self._name}-{suffix}", metadata=self._metadata("azp-credential", None, namespace),
                                   type="Opaque", string_data={"token": pulumi.Output.secret(credential)}, opts=opts)]

    def _service_account(self, opts: pulumi.ResourceOptions) -> None:
        metadata = self._metadata("azp-agent")
        if self._args.settings.auth.mode == "workload-identity":
            metadata["annotations"] = {"azure.workload.identity/client-id": str(self._args.settings.auth.client_id)}
        k8s.core.v1.ServiceAccount(f"{self._name}-service-account", metadata=metadata,
                                   automount_service_account_token=False, opts=opts)

    def _keda(self, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        settings = self._args.settings
        return [k8s.helm.v3.Release(
            f"{self._name}-keda", name="keda", chart="keda", version=settings.keda_version,
            repository_opts={"repo": KEDA_CHART_REPO}, namespace=KEDA_NAMESPACE, create_namespace=True,
            atomic=True, cleanup_on_fail=True, values=keda_values(settings), opts=opts)]

    def _custom(self, suffix: str, kind: str, name: str, spec: dict, opts: pulumi.ResourceOptions,
                namespace: str | None = None) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(f"{self._name}-{suffix}", api_version="keda.sh/v1alpha1", kind=kind,
                                                metadata=self._metadata(name, None, namespace), spec=spec, opts=opts)

    def _builders(self, namespace: k8s.core.v1.Namespace, keda: list[pulumi.Resource]) -> None:
        """Per architecture a builder Deployment and Service, scaled by KEDA from the same queue as the agents.

        KEDA reads the queue from the builders' namespace too: a TriggerAuthentication holds per-namespace
        credentials (keda.sh/docs/2.20/concepts/authentication/), so with a PAT that namespace has its own copy.
        """
        settings, ns = self._args.settings, self._args.settings.buildkit_namespace
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        pat_only = settings.auth.mode == "pat"  # otherwise KEDA reads the queue with workload identity
        secret = self._credential(ns, "buildkit-credential", self._args.credential, in_ns) if pat_only else []
        needs_keda = pulumi.ResourceOptions(parent=self, depends_on=[namespace, *secret, *keda])
        self._custom("buildkit-trigger-auth", "TriggerAuthentication", "azp-trigger-auth",
                     trigger_auth_spec(settings), needs_keda, ns)
        for pool in sorted(self._args.pools, key=lambda p: p.arch):
            arch = pool.arch
            builder = buildkit.BuilderArgs(settings, pool, tuple(self._args.pool_taints.get(arch, [])))
            metadata = self._metadata(f"buildkitd-{arch}", buildkit.buildkit_labels(arch), ns)
            deployment = k8s.apps.v1.Deployment(f"{self._name}-buildkitd-{arch}",
                                                metadata=metadata | {"annotations": buildkit.scanner_annotations()},
                                                spec=buildkit.deployment_spec(builder), opts=in_ns)
            k8s.core.v1.Service(f"{self._name}-buildkitd-service-{arch}", metadata=metadata,
                                spec=buildkit.service_spec(arch), opts=in_ns)
            after_target = pulumi.ResourceOptions(parent=self, depends_on=[deployment, *secret, *keda])
            self._custom(f"buildkit-scaledobject-{arch}", "ScaledObject", f"buildkitd-{arch}",
                         buildkit.scaled_object_spec(builder), after_target, ns)

    def _policies(self, agents_opts: pulumi.ResourceOptions, builders_opts: pulumi.ResourceOptions) -> None:
        settings, networking = self._args.settings, k8s.networking.v1
        networking.NetworkPolicy(f"{self._name}-agents-netpol", metadata=self._metadata("azp-agents"),
                                 spec=agent_network_policy(settings), opts=agents_opts)
        networking.NetworkPolicy(f"{self._name}-buildkitd-netpol",
                                 metadata=self._metadata("buildkitd", None, settings.buildkit_namespace),
                                 spec=buildkit.network_policy(settings, agent_labels()), opts=builders_opts)
        k8s.policy.v1.PodDisruptionBudget(f"{self._name}-agents-pdb", metadata=self._metadata("azp-agents"), spec={
            "maxUnavailable": 0, "selector": {"matchLabels": agent_labels()}}, opts=agents_opts)
