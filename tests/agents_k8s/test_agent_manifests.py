"""The rendered agent manifests, per cluster and architecture: schema-valid and locked down."""
import json
import re

import kubernetes_validate
import pytest

from agents.buildkit import buildkit_labels
from agents.pool import AGENT_UID
from agents.settings import AgentsSettings
from tests.agents_k8s.conftest import SECRETS, SETTINGS, as_text

AGENTS_NS, BUILDKIT_NS = "azp-agents", "azp-buildkit"
BUILDKIT_LABELS = buildkit_labels()
KEDA_PINNED = AgentsSettings.model_fields["keda_version"].default
BUILDKIT_KINDS = {"Deployment", "Service", "ScaledObject", "TriggerAuthentication", "Secret", "NetworkPolicy"}
K8S_VERSIONS = ["1.30", "1.37"]  # the oldest minor AKS and k3s still support here, and the newest schema shipped
CLUSTER_ARCHES = [("aks", "amd64"), ("aks", "arm64"), ("edge-plant-1", "arm64"), ("edge-plant-1", "arm")]
AGENT_POOLS = {("aks", p["arch"]): p for p in SETTINGS["pools"]} | {
    ("edge-plant-1", p["arch"]): p for p in SETTINGS["edgeSites"][0]["pools"]}


def objects(plan, cluster: str) -> list[dict]:
    """The Kubernetes objects (inputs) one cluster's provider would apply, Helm releases aside."""
    return [r.inputs for r in plan.resources
            if r.type.startswith("kubernetes:") and "helm.sh" not in r.type and r.provider.endswith(f"::{cluster}-agents-k8s")]


def find(plan, cluster: str, kind: str, name: str, namespace: str = AGENTS_NS) -> dict:
    found = [o for o in objects(plan, cluster) if o["kind"] == kind and o["metadata"]["name"] == name
             and o["metadata"].get("namespace", namespace) == namespace]
    assert len(found) == 1, f"{cluster}: expected one {kind}/{name} in {namespace}, found {len(found)}"
    return found[0]


def pod(plan, cluster: str, arch: str) -> dict:
    return find(plan, cluster, "ScaledJob", f"azp-agent-{arch}")["spec"]["jobTargetRef"]["template"]


def agent_container(plan, cluster: str, arch: str) -> dict:
    (container,) = pod(plan, cluster, arch)["spec"]["containers"]
    return container


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("cluster", ["aks", "edge-plant-1"])
def test_core_objects_are_schema_valid_in_strict_mode(plan, cluster, version):
    core = [o for o in objects(plan, cluster) if not o["apiVersion"].startswith("keda.sh/")]
    kinds = {o["kind"] for o in core}
    assert {"Namespace", "Secret", "ServiceAccount", "Deployment", "Service", "NetworkPolicy",
            "PodDisruptionBudget"} <= kinds
    for obj in core:
        kubernetes_validate.validate(without_masked_secret_data(obj), version, strict=True)


def masked(string_data) -> bool:
    """A Secret's stringData as recorded: masked whole, or value by value."""
    return string_data == "[secret]" or (string_data and set(string_data.values()) == {"[secret]"})


def without_masked_secret_data(obj: dict) -> dict:
    """Validate a Secret without its stringData where the recorder masked it whole (not a mapping then)."""
    if obj["kind"] != "Secret":
        return obj
    assert masked(obj["stringData"])
    return {key: value for key, value in obj.items() if key != "stringData" or isinstance(value, dict)}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_each_scaled_jobs_job_is_a_schema_valid_job(plan, cluster, arch, version):
    scaled_job = find(plan, cluster, "ScaledJob", f"azp-agent-{arch}")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"azp-agent-{arch}"},
           "spec": scaled_job["spec"]["jobTargetRef"]}
    kubernetes_validate.validate(job, version, strict=True)


def test_strict_validation_catches_a_misplaced_field():
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i", "runAsUser": 1}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30", strict=True)


@pytest.mark.parametrize("cluster", ["aks", "edge-plant-1"])
def test_every_object_is_named_and_namespaced_builders_apart(plan, cluster):
    for obj in objects(plan, cluster):
        assert obj["metadata"]["name"]
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] in (AGENTS_NS, BUILDKIT_NS), obj
    in_builders = {o["kind"] for o in objects(plan, cluster) if o["metadata"].get("namespace") == BUILDKIT_NS}
    assert in_builders == BUILDKIT_KINDS
    agents_kinds = {o["kind"] for o in objects(plan, cluster) if o["metadata"].get("namespace") == AGENTS_NS}
    assert not agents_kinds & {"Deployment", "ScaledObject"}, "nothing but agents runs in the agents' namespace"


@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_agent_pod_security(plan, cluster, arch):
    spec = pod(plan, cluster, arch)["spec"]
    container = agent_container(plan, cluster, arch)
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": AGENT_UID, "runAsGroup": AGENT_UID,
                                       "fsGroup": AGENT_UID, "seccompProfile": {"type": "RuntimeDefault"}}
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == AGENT_UID
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False and spec["serviceAccountName"] == "azp-agent"
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec)
    assert "docker.sock" not in json.dumps(spec) and "hostPath" not in json.dumps(spec)


@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_agent_volumes_work_tmp_and_token(plan, cluster, arch):
    spec = pod(plan, cluster, arch)["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in agent_container(plan, cluster, arch)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/azp/work"]["name"]]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    # the Secret only in the init container; the agent gets an in-memory copy its entrypoint deletes at start
    assert "/var/run/secrets/azp" not in mounts and not any(volumes[m["name"]].get("secret") for m in mounts.values())
    assert volumes[mounts["/azp/credential"]["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
    assert env_of(agent_container(plan, cluster, arch))["AZP_TOKEN_FILE"] == "/azp/credential/token"
    (init,) = spec["initContainers"]
    init_mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    assert init["command"] == ["cp", "/var/run/secrets/azp/token", "/azp/credential/token"]
    assert init_mounts["/var/run/secrets/azp"]["readOnly"] is True
    assert init_mounts["/azp/credential"]["name"] == mounts["/azp/credential"]["name"]
    assert init["securityContext"] == agent_container(plan, cluster, arch)["securityContext"]
    secret = volumes[init_mounts["/var/run/secrets/azp"]["name"]]["secret"]
    assert secret["secretName"] == "azp-credential" and secret["defaultMode"] == 0o400
    assert secret["items"] == [{"key": "token", "path": "token"}]


@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_agent_environment_and_image(plan, cluster, arch):
    container = agent_container(plan, cluster, arch)
    env = env_of(container)
    assert env["AZP_URL"] == "https://dev.azure.com/contoso"
    assert env["AZP_POOL"] == AGENT_POOLS[(cluster, arch)]["poolName"]
    assert env["AZP_AGENT_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["AZP_TOKEN_FILE"] == "/azp/credential/token"
    assert env["AZP_AUTH"] == "pat" and env["AZP_WORK"] == "/azp/work"
    assert not any("TOKEN" in name and name != "AZP_TOKEN_FILE" for name in env)
    assert container["image"] == "mlopsdevacr.azurecr.io/mlops-edge-kit/azp-agent:4.258.1-1"
    buildkit_service = env["BUILDKIT_HOST"].removeprefix("tcp://").split(".")[0]
    assert env["BUILDKIT_HOST"] == f"tcp://{buildkit_service}.{BUILDKIT_NS}:1234"
    assert find(plan, cluster, "Service", buildkit_service, BUILDKIT_NS)["spec"]["ports"][0]["port"] == 1234
    assert find(plan, cluster, "Deployment", buildkit_service, BUILDKIT_NS)["spec"]["template"]["spec"][
        "nodeSelector"]["kubernetes.io/arch"] == arch


@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_agent_scheduling_resources_and_probes(plan, cluster, arch):
    template = pod(plan, cluster, arch)
    spec, container = template["spec"], agent_container(plan, cluster, arch)
    assert spec["nodeSelector"]["kubernetes.io/arch"] == arch
    tolerations = spec["tolerations"]
    assert not any(t["key"] == "CriticalAddonsOnly" for t in tolerations)
    if (cluster, arch) == ("aks", "arm64"):
        assert tolerations == [{"key": "kubernetes.io/arch", "operator": "Equal", "value": "arm64",
                                "effect": "NoSchedule"}]
    (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "kubernetes.azure.com/mode", "operator": "NotIn", "values": ["system"]}]
    wanted = AGENT_POOLS[(cluster, arch)].get("resources", {"cpuRequest": "500m", "memoryRequest": "1Gi",
                                                               "cpuLimit": "2", "memoryLimit": "4Gi"})
    assert container["resources"] == {"requests": {"cpu": wanted["cpuRequest"], "memory": wanted["memoryRequest"]},
                                      "limits": {"cpu": wanted["cpuLimit"], "memory": wanted["memoryLimit"]}}
    assert spec["terminationGracePeriodSeconds"] >= SETTINGS["jobTimeoutMinutes"] * 60
    assert template["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert container["livenessProbe"]["exec"]["command"] == ["/usr/local/bin/azp-probe", "live"]
    assert container["readinessProbe"]["exec"]["command"] == ["/usr/local/bin/azp-probe", "ready"]
    assert spec["restartPolicy"] == "Never"


@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_scaled_job_trigger(plan, cluster, arch):
    spec = find(plan, cluster, "ScaledJob", f"azp-agent-{arch}")["spec"]
    pool = AGENT_POOLS[(cluster, arch)]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (pool.get("minReplicas", 0), pool["maxReplicas"])
    assert spec["pollingInterval"] == SETTINGS["pollingIntervalSeconds"]
    assert spec["scalingStrategy"] == {"strategy": "default"} and spec["rollout"] == {"strategy": "gradual"}
    assert spec["jobTargetRef"]["backoffLimit"] == 0
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "azure-pipelines"
    metadata = trigger["metadata"]
    assert metadata["poolName"] == pool["poolName"] and metadata["organizationURLFromEnv"] == "AZP_URL"
    assert metadata["targetPipelinesQueueLength"] == "1"
    capability = {"amd64": "X64", "arm64": "ARM64", "arm": "ARM"}[arch]
    assert metadata["demands"].split(",") == ["Agent.OS -equals Linux", f"Agent.OSArchitecture -equals {capability}"]
    auth = find(plan, cluster, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"] == {"secretTargetRef": [
        {"parameter": "personalAccessToken", "name": "azp-credential", "key": "token"}]}
    find(plan, cluster, "Secret", "azp-credential")


@pytest.mark.parametrize("cluster", ["aks", "edge-plant-1"])
def test_keda_release_is_pinned_and_ordered_before_its_resources(plan, cluster):
    (release,) = [r for r in plan.of_type("kubernetes:helm.sh/v3:Release") if r.name == f"{cluster}-agents-keda"]
    assert release.inputs["chart"] == "keda" and release.inputs["version"] == KEDA_PINNED
    assert release.inputs["repositoryOpts"] == {"repo": "https://kedacore.github.io/charts"}
    (term,) = release.inputs["values"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert term == {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}
    assert "podIdentity" not in release.inputs["values"]
    keda_objects = [r for r in plan.resources if r.type.startswith("kubernetes:keda.sh/")
                    and r.provider.endswith(f"::{cluster}-agents-k8s")]
    assert len(keda_objects) >= 2
    assert all(release.urn in r.dependencies for r in keda_objects)
    secrets = {r.inputs["metadata"]["namespace"]: r.urn for r in plan.of_type("kubernetes:core/v1:Secret")
               if r.provider.endswith(f"::{cluster}-agents-k8s")}
    assert set(secrets) == {AGENTS_NS, BUILDKIT_NS}
    assert all(secrets[r.inputs["metadata"]["namespace"]] in r.dependencies for r in keda_objects)


@pytest.mark.parametrize("cluster", ["aks", "edge-plant-1"])
def test_the_agents_namespace_enforces_restricted_and_only_the_builders_are_privileged(plan, cluster):
    assert find(plan, cluster, "ServiceAccount", "azp-agent")["automountServiceAccountToken"] is False
    labels = find(plan, cluster, "Namespace", AGENTS_NS)["metadata"]["labels"]
    assert {labels[f"pod-security.kubernetes.io/{mode}"] for mode in ("enforce", "warn", "audit")} == {"restricted"}
    builders = find(plan, cluster, "Namespace", BUILDKIT_NS)["metadata"]["labels"]
    assert builders["pod-security.kubernetes.io/enforce"] == "privileged"
    unconfined = [o for o in objects(plan, cluster) if "Unconfined" in json.dumps(o)]
    assert unconfined and all(o["metadata"]["namespace"] == BUILDKIT_NS for o in unconfined)


def egress_ports(rule: dict) -> set[tuple[str, int]]:
    return {(p["protocol"], p["port"]) for p in rule["ports"]}


@pytest.mark.parametrize("cluster", ["aks", "edge-plant-1"])
def test_agent_network_policy_denies_ingress_and_limits_egress(plan, cluster):
    spec = find(plan, cluster, "NetworkPolicy", "azp-agents")["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"} and spec["ingress"] == []
    ports = set().union(*(egress_ports(rule) for rule in spec["egress"]))
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443), ("TCP", 1234)}
    (buildkit_rule,) = [rule for rule in spec["egress"] if ("TCP", 1234) in egress_ports(rule)]
    assert buildkit_rule["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": BUILDKIT_NS}},
                                    "podSelector": {"matchLabels": BUILDKIT_LABELS}}]
    for arch in {a for c, a in CLUSTER_ARCHES if c == cluster}:  # the rule reaches every builder pod
        builder = find(plan, cluster, "Deployment", f"buildkitd-{arch}", BUILDKIT_NS)["spec"]["template"]
        assert BUILDKIT_LABELS.items() <= builder["metadata"]["labels"].items()
    for arch in {a for c, a in CLUSTER_ARCHES if c == cluster}:
        assert spec["podSelector"]["matchLabels"].items() <= pod(plan, cluster, arch)["metadata"]["labels"].items()


@pytest.mark.parametrize("cluster", ["aks", "edge-plant-1"])
def test_pod_disruption_budget_covers_every_agent_pod(plan, cluster):
    spec = find(plan, cluster, "PodDisruptionBudget", "azp-agents")["spec"]
    assert spec["maxUnavailable"] == 0
    for arch in {a for c, a in CLUSTER_ARCHES if c == cluster}:
        assert spec["selector"]["matchLabels"].items() <= pod(plan, cluster, arch)["metadata"]["labels"].items()


@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_buildkit_is_rootless_pinned_and_reachable_only_by_agents(plan, cluster, arch):
    spec = find(plan, cluster, "Deployment", f"buildkitd-{arch}", BUILDKIT_NS)["spec"]
    assert "replicas" not in spec, "KEDA owns the builder's replicas; pulumi up must not reset them"
    deployment = spec["template"]["spec"]
    (container,) = deployment["containers"]
    assert re.fullmatch(r"moby/buildkit:v0\.33\.0-rootless@sha256:[0-9a-f]{64}", container["image"])
    assert "--oci-worker-no-process-sandbox" in container["args"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 1000
    assert not security.get("privileged")
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["SETGID", "SETUID"]}
    assert security["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts) == {"/home/user/.local/share/buildkit", "/run/user/1000", "/home/user/.local/tmp"}
    assert {v["name"] for v in deployment["volumes"] if "emptyDir" in v} == set(mounts.values())
    assert deployment["automountServiceAccountToken"] is False
    assert "hostPath" not in json.dumps(deployment) and container["resources"]["limits"]
    policy = find(plan, cluster, "NetworkPolicy", "buildkitd", BUILDKIT_NS)["spec"]
    assert policy["podSelector"] == {"matchLabels": BUILDKIT_LABELS}
    (ingress,) = policy["ingress"]
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": AGENTS_NS}},
                                "podSelector": {"matchLabels": {
                                    "app.kubernetes.io/name": "azp-agent", "app.kubernetes.io/part-of": "mlops-edge-kit"}}}]
    assert egress_ports(ingress) == {("TCP", 1234)}


@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_each_builder_scales_with_its_pools_queue_down_to_zero(plan, cluster, arch):
    scaled = find(plan, cluster, "ScaledObject", f"buildkitd-{arch}", BUILDKIT_NS)["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"buildkitd-{arch}"}
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (0, 1)
    agents = find(plan, cluster, "ScaledJob", f"azp-agent-{arch}")["spec"]
    assert scaled["triggers"] == agents["triggers"], "the builder follows the same queue as its agents"
    auth = find(plan, cluster, "TriggerAuthentication", "azp-trigger-auth", BUILDKIT_NS)["spec"]
    assert auth == find(plan, cluster, "TriggerAuthentication", "azp-trigger-auth")["spec"]
    secret_ref = auth["secretTargetRef"][0]
    find(plan, cluster, "Secret", secret_ref["name"], BUILDKIT_NS)  # a TriggerAuthentication reads its own namespace


def test_secrets_never_appear_in_cleartext(plan):
    text = as_text(plan)
    for secret in SECRETS:
        assert secret not in text
    for cluster in ("aks", "edge-plant-1"):
        assert masked(find(plan, cluster, "Secret", "azp-credential")["stringData"])
    providers = plan.of_type("pulumi:providers:kubernetes")
    assert len(providers) == 2 and all(p.inputs["kubeconfig"] == "[secret]" for p in providers)
    assert plan.outputs["agentPools"] == ["aks", "edge-plant-1"]


@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_each_pool_keeps_a_placeholder_agent_matching_the_demands(plan, cluster, arch):
    (placeholder,) = [r for r in plan.of_type("pulumi-python:dynamic:Resource")
                      if r.name == f"{cluster}-agents-placeholder-{arch}"]
    pool = AGENT_POOLS[(cluster, arch)]
    assert placeholder.inputs["pool_name"] == pool["poolName"] and placeholder.inputs["token"] == "[secret]"
    assert placeholder.inputs["organization_url"] == "https://dev.azure.com/contoso"
    demands = find(plan, cluster, "ScaledJob", f"azp-agent-{arch}")["spec"]["triggers"][0]["metadata"]["demands"]
    capabilities = placeholder.inputs["capabilities"]
    assert sorted(demands.split(",")) == sorted(f"{name} -equals {value}" for name, value in capabilities.items())
