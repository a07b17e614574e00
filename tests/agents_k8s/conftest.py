"""Record the agents' resources offline, through the platform's own recorder, once per settings."""
import json

import pulumi
import pytest

from agents.deploy import deploy_agents
from agents.settings import AgentsSettings
from infra.offline.runtime import Recording, record

PAT = "pat-7f3e9c1d-do-not-leak"
EDGE_KUBECONFIG = "apiVersion: v1\nkind: Config\nusers: [{name: edge, user: {token: edge-token-5b2a}}]\n"
AKS_KUBECONFIG = "apiVersion: v1\nkind: Config\nusers: [{name: aks, user: {token: aks-token-91cc}}]\n"
CLIENT_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
TENANT_ID = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
ARM64_TAINT = "kubernetes.io/arch=arm64:NoSchedule"
SECRETS = (PAT, EDGE_KUBECONFIG, AKS_KUBECONFIG, "edge-token-5b2a", "aks-token-91cc")

SETTINGS = {
    "organizationUrl": "https://dev.azure.com/contoso",
    "image": {"repository": "mlops-edge-kit/azp-agent", "tag": "4.258.1-1"},
    "jobTimeoutMinutes": 90,
    "pollingIntervalSeconds": 15,
    "pools": [
        {"arch": "amd64", "poolName": "aks-x64", "minReplicas": 0, "maxReplicas": 6},
        {"arch": "arm64", "poolName": "aks-arm64", "minReplicas": 1, "maxReplicas": 3,
         "resources": {"cpuRequest": "1", "memoryRequest": "2Gi", "cpuLimit": "4", "memoryLimit": "8Gi"}},
    ],
    "edgeSites": [{"name": "plant-1", "kubeconfigSecretKey": "plant1Kubeconfig", "pools": [
        {"arch": "arm64", "poolName": "edge-arm64", "maxReplicas": 2},
        {"arch": "arm", "poolName": "edge-armv7", "maxReplicas": 2,
         "resources": {"cpuRequest": "250m", "memoryRequest": "256Mi", "cpuLimit": "1", "memoryLimit": "768Mi"}},
    ]}],
}


def record_agents(raw: dict, extra_config: dict[str, str] | None = None) -> Recording:
    """Run deploy_agents as the platform program does, with the secrets in Pulumi secret config."""
    settings = AgentsSettings.model_validate(raw)

    def program():
        pools = deploy_agents(settings, cluster_kubeconfig=pulumi.Output.secret(AKS_KUBECONFIG),
                              registry_login_server=pulumi.Output.from_input("mlopsdevacr.azurecr.io"),
                              parent=None, pool_taints={"arm64": [ARM64_TAINT]})
        pulumi.export("agentPools", sorted(pools))

    config = {"mlops-edge-kit:azpToken": PAT, "mlops-edge-kit:plant1Kubeconfig": EDGE_KUBECONFIG,
              **(extra_config or {})}
    return record(program, project="mlops-edge-kit", stack="dev", config=config, secret_keys=list(config))


def as_text(recording: Recording) -> str:
    return json.dumps([r.as_json() for r in recording.resources] + [recording.outputs])


@pytest.fixture(scope="session")
def plan() -> Recording:
    return record_agents(SETTINGS)
