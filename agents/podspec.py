"""Pieces of pod specs and policies that the agents and their BuildKit share."""
from collections.abc import Sequence

# The capability an agent reports for its CPU, per Kubernetes architecture.
OS_ARCHITECTURE = {"amd64": "X64", "arm64": "ARM64", "arm": "ARM"}
SYSTEM_POOL_TAINT = "CriticalAddonsOnly"
NAMESPACE_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace (Kubernetes 1.22+)


def capabilities(arch: str) -> dict[str, str]:
    """System capabilities every agent of this architecture reports (and its placeholder carries)."""
    return {"Agent.OS": "Linux", "Agent.OSArchitecture": OS_ARCHITECTURE[arch]}


def demands(arch: str) -> str:
    """The capabilities as KEDA's comma-separated demand list."""
    return ",".join(f"{name} -equals {value}" for name, value in capabilities(arch).items())


def queue_trigger(pool_name: str, arch: str) -> dict:
    """KEDA's azure-pipelines trigger on one pool's queue, counting the jobs this architecture can take."""
    return {"type": "azure-pipelines", "authenticationRef": {"name": "azp-trigger-auth"}, "metadata": {
        "poolName": pool_name, "organizationURLFromEnv": "AZP_URL", "targetPipelinesQueueLength": "1",
        "demands": demands(arch), "requireAllDemands": "false"}}


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


def not_on_system_nodes() -> dict:
    """Keep pods off AKS system nodes even if a toleration ever matched (k3s nodes lack the label)."""
    term = {"matchExpressions": [{"key": "kubernetes.azure.com/mode", "operator": "NotIn", "values": ["system"]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def exec_probe(command: list[str], period: int, failures: int) -> dict:
    return {"exec": {"command": command}, "periodSeconds": period, "timeoutSeconds": 10, "failureThreshold": failures}


def egress_dns_and_https() -> list[dict]:
    return [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {"ports": [{"protocol": "TCP", "port": 443}]}]


def pods_in(namespace: str, labels: dict[str, str]) -> dict:
    """A NetworkPolicy peer: the pods with these labels in another namespace."""
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: namespace}}, "podSelector": {"matchLabels": labels}}
