"""AgentPool: self-hosted Azure Pipelines agents on one Kubernetes cluster (AKS or an edge k3s site).

Every object carries an explicit name and namespace, so the offline plan can write it as a manifest.
"""
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from agents.placeholder import PlaceholderAgent
from agents.settings import AgentsSettings, ArchPool

KEDA_CHART_REPO = "https://kedacore.github.io/charts"
KEDA_NAMESPACE = "keda"
AGENT_UID = 10001
K3S_API_PORT = 6443
BUILDKIT_UID = 1000  # fixed by the moby/buildkit rootless image
BUILDKIT_PORT = 1234
TOKEN_DIR = "/var/run/secrets/azp"
PROBE = "/usr/local/bin/azp-probe"
# The capability an agent reports for its CPU, per Kubernetes architecture.
OS_ARCHITECTURE = {"amd64": "X64", "arm64": "ARM64", "arm": "ARM"}
SYSTEM_POOL_TAINT = "CriticalAddonsOnly"


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


def buildkit_labels(arch: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "buildkitd", "app.kubernetes.io/part-of": "mlops-edge-kit",
            "mlops-edge-kit/arch": arch}


def capabilities(arch: str) -> dict[str, str]:
    """System capabilities every agent of this architecture reports (and its placeholder carries)."""
    return {"Agent.OS": "Linux", "Agent.OSArchitecture": OS_ARCHITECTURE[arch]}


def demands(arch: str) -> str:
    """The capabilities as KEDA's comma-separated demand list."""
    return ",".join(f"{name} -equals {value}" for name, value in capabilities(arch).items())


def tolerations(taints: Sequence[str]) -> list[dict]:
    """Tolerations for node taints written `key=value:Effect` or `key:Effect`; never the system pool's."""
    result = []
    for taint in taints:
        key_value, _, effect = taint.rpartition(":")
        key, has_value, value = key_value.partition("=")
        if not key or not effect:
            raise ValueError(f"taint '{taint}' is not of the form key=value:Effect")
        if key == SYSTEM_POOL_TAINT:
            raise ValueError(f"agents must never run on the system pool (taint '{taint}')")
        result.append({"key": key, "operator": "Equal", "value": value, "effect": effect} if has_value
                      else {"key": key, "operator": "Exists", "effect": effect})
    return result


def restricted_container_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": AGENT_UID, "runAsGroup": AGENT_UID, "privileged": False,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def not_on_system_nodes() -> dict:
    """Keep pods off AKS system nodes even if a toleration ever matched (k3s nodes lack the label)."""
    term = {"matchExpressions": [{"key": "kubernetes.azure.com/mode", "operator": "NotIn", "values": ["system"]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def exec_probe(command: list[str], period: int, failures: int) -> dict:
    return {"exec": {"command": command}, "periodSeconds": period, "timeoutSeconds": 10, "failureThreshold": failures}


def agent_env(settings: AgentsSettings, pool: ArchPool) -> list[dict]:
    env = {"AZP_URL": settings.organization_url, "AZP_POOL": pool.pool_name, "AZP_AUTH": settings.auth.mode,
           "AZP_WORK": "/azp/work", "BUILDKIT_HOST": f"tcp://buildkitd-{pool.arch}.{settings.namespace}:{BUILDKIT_PORT}"}
    if settings.auth.mode != "workload-identity":
        env["AZP_TOKEN_FILE"] = f"{TOKEN_DIR}/token"
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
        mounts.append({"name": "azp-credential", "mountPath": TOKEN_DIR, "readOnly": True})
        volumes.append({"name": "azp-credential", "secret": {
            "secretName": "azp-credential", "defaultMode": 0o400, "items": [{"key": "token", "path": "token"}]}})
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
        },
    }


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
        "triggers": [{"type": "azure-pipelines", "authenticationRef": {"name": "azp-trigger-auth"}, "metadata": {
            "poolName": pool.pool_name, "organizationURLFromEnv": "AZP_URL", "targetPipelinesQueueLength": "1",
            "demands": demands(pool.arch), "requireAllDemands": "false"}}],
    }


def trigger_auth_spec(settings: AgentsSettings) -> dict:
    """How KEDA reads the queue: the PAT from the Secret, or Azure workload identity."""
    if settings.auth.mode == "pat":
        return {"secretTargetRef": [{"parameter": "personalAccessToken", "name": "azp-credential", "key": "token"}]}
    return {"podIdentity": {"provider": "azure-workload", "identityId": str(settings.auth.client_id)}}


def egress_dns_and_https() -> list[dict]:
    return [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {"ports": [{"protocol": "TCP", "port": 443}]}]


def agent_network_policy() -> dict:
    """No ingress; egress only to DNS, HTTPS (Azure DevOps, registries, AKS API), the k3s API server port
    (deploy jobs on edge sites) and this namespace's BuildKit."""
    buildkit = {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "buildkitd"}}}],
                "ports": [{"protocol": "TCP", "port": BUILDKIT_PORT}]}
    k3s_api = {"ports": [{"protocol": "TCP", "port": K3S_API_PORT}]}
    return {"podSelector": {"matchLabels": agent_labels()}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [], "egress": egress_dns_and_https() + [k3s_api, buildkit]}


def buildkit_network_policy() -> dict:
    """BuildKit is reached only by agents; it fetches base images and packages over HTTP(S)."""
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "buildkitd"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": agent_labels()}}],
                         "ports": [{"protocol": "TCP", "port": BUILDKIT_PORT}]}],
            "egress": egress_dns_and_https() + [{"ports": [{"protocol": "TCP", "port": 80}]}]}


def buildkit_deployment_spec(args: AgentPoolArgs, arch: str) -> dict:
    """Rootless buildkitd, native to one architecture.

    Rootless BuildKit creates user namespaces and mounts inside them, which the runtime's default
    seccomp and AppArmor profiles forbid: this container alone runs with both Unconfined (and keeps
    privilege escalation for the setuid newuidmap). --oci-worker-no-process-sandbox avoids needing a
    fresh /proc, so no privileged mode and no host paths are needed.
    """
    labels = buildkit_labels(arch)
    container = {
        "name": "buildkitd", "image": args.settings.buildkit_image, "imagePullPolicy": "IfNotPresent",
        "args": ["--addr", f"unix:///run/user/{BUILDKIT_UID}/buildkit/buildkitd.sock",
                 "--addr", f"tcp://0.0.0.0:{BUILDKIT_PORT}", "--oci-worker-no-process-sandbox"],
        "ports": [{"name": "buildkit", "containerPort": BUILDKIT_PORT, "protocol": "TCP"}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": BUILDKIT_UID, "runAsGroup": BUILDKIT_UID,
                            "seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"}},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        "readinessProbe": exec_probe(["buildctl", "debug", "workers"], period=10, failures=3),
        "livenessProbe": exec_probe(["buildctl", "debug", "workers"], period=30, failures=3),
        "volumeMounts": [{"name": "state", "mountPath": "/home/user/.local/share/buildkit"}],
    }
    return {
        "replicas": 1, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {
            "automountServiceAccountToken": False, "enableServiceLinks": False,
            "nodeSelector": {"kubernetes.io/arch": arch, "kubernetes.io/os": "linux"},
            "tolerations": tolerations(args.pool_taints.get(arch, [])), "affinity": not_on_system_nodes(),
            "containers": [container], "volumes": [{"name": "state", "emptyDir": {"sizeLimit": "20Gi"}}]}},
    }


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
        self.namespace_name = args.settings.namespace
        child = pulumi.ResourceOptions(parent=self)
        namespace = self._namespace(child)
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        secret = self._credential(in_ns)
        self._service_account(in_ns)
        keda = self._keda(child) if args.install_keda else []
        needs_keda = pulumi.ResourceOptions(parent=self, depends_on=[namespace, *secret, *keda])
        self._custom("trigger-auth", "TriggerAuthentication", "azp-trigger-auth",
                     trigger_auth_spec(args.settings), needs_keda)
        image = pulumi.Output.concat(args.registry_login_server, "/", args.settings.image.repository, ":",
                                     args.settings.image.tag)
        self.scaled_jobs = {pool.arch: self._custom(f"scaledjob-{pool.arch}", "ScaledJob", f"azp-agent-{pool.arch}",
                                                    scaled_job_spec(args, pool, image), needs_keda)
                            for pool in args.pools}
        for pool in args.pools:
            PlaceholderAgent(f"{name}-placeholder-{pool.arch}", organization_url=args.settings.organization_url,
                             pool_name=after(args.pools_ready, pool.pool_name), token=args.placeholder_token,
                             capabilities=capabilities(pool.arch), opts=child)
        for arch in sorted({pool.arch for pool in args.pools}):
            self._buildkit(arch, in_ns)
        self._policies(in_ns)
        self.register_outputs({"namespace": self.namespace_name, "scaledJobs": sorted(self.scaled_jobs)})

    def _metadata(self, name: str, labels: dict | None = None) -> dict:
        return {"name": name, "namespace": self.namespace_name,
                "labels": {"app.kubernetes.io/part-of": "mlops-edge-kit"} | (labels or {})}

    def _namespace(self, opts: pulumi.ResourceOptions) -> k8s.core.v1.Namespace:
        # BuildKit needs Unconfined seccomp, so "restricted" is audited and warned about, not enforced.
        labels = {"pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/audit": "restricted"}
        return k8s.core.v1.Namespace(f"{self._name}-namespace", metadata={
            "name": self.namespace_name, "labels": {"app.kubernetes.io/part-of": "mlops-edge-kit"} | labels}, opts=opts)

    def _credential(self, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """The Secret agents (and KEDA, with a PAT) read the credential from; none with workload identity."""
        mode = self._args.settings.auth.mode
        if mode == "workload-identity":
            return []
        if self._args.credential is None:
            raise ValueError(f"auth mode {mode} needs a credential for the agents' Secret")
        return [k8s.core.v1.Secret(f"{self._name}-credential", metadata=self._metadata("azp-credential"), type="Opaque",
                                   string_data={"token": pulumi.Output.secret(self._args.credential)}, opts=opts)]

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

    def _custom(self, suffix: str, kind: str, name: str, spec: dict,
                opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(f"{self._name}-{suffix}", api_version="keda.sh/v1alpha1", kind=kind,
                                                metadata=self._metadata(name), spec=spec, opts=opts)

    def _buildkit(self, arch: str, opts: pulumi.ResourceOptions) -> None:
        labels = buildkit_labels(arch)
        k8s.apps.v1.Deployment(f"{self._name}-buildkitd-{arch}", metadata=self._metadata(f"buildkitd-{arch}", labels),
                               spec=buildkit_deployment_spec(self._args, arch), opts=opts)
        k8s.core.v1.Service(f"{self._name}-buildkitd-service-{arch}", metadata=self._metadata(f"buildkitd-{arch}", labels),
                            spec={"type": "ClusterIP", "selector": labels, "ports": [
                                {"name": "buildkit", "port": BUILDKIT_PORT, "targetPort": BUILDKIT_PORT,
                                 "protocol": "TCP"}]}, opts=opts)

    def _policies(self, opts: pulumi.ResourceOptions) -> None:
        networking = k8s.networking.v1
        networking.NetworkPolicy(f"{self._name}-agents-netpol", metadata=self._metadata("azp-agents"),
                                 spec=agent_network_policy(), opts=opts)
        networking.NetworkPolicy(f"{self._name}-buildkitd-netpol", metadata=self._metadata("buildkitd"),
                                 spec=buildkit_network_policy(), opts=opts)
        k8s.policy.v1.PodDisruptionBudget(f"{self._name}-agents-pdb", metadata=self._metadata("azp-agents"), spec={
            "maxUnavailable": 0, "selector": {"matchLabels": agent_labels()}}, opts=opts)
