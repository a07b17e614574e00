"""Wire the agents into a platform stack: AKS pools on the stack's cluster, arm pools on edge k3s sites."""
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from agents.pool import AgentPool, AgentPoolArgs
from agents.settings import AgentsSettings

CONFIG_NAMESPACE = "mlops-edge-kit"
CREDENTIAL_KEY = "azpToken"


def deploy_agents(settings: AgentsSettings, *, cluster_kubeconfig: pulumi.Output[str],
                  registry_login_server: pulumi.Output[str], parent: pulumi.Resource | None,
                  pool_taints: Mapping[str, Sequence[str]]) -> dict[str, AgentPool]:
    """One AgentPool on the AKS cluster ("aks") and one per edge site ("edge-<site>"); none when disabled."""
    if not settings.enabled:
        return {}
    config = pulumi.Config(CONFIG_NAMESPACE)
    credential = config.require_secret(CREDENTIAL_KEY) if settings.auth.mode != "workload-identity" else None
    in_parent = pulumi.ResourceOptions(parent=parent)

    def pool_on(cluster: str, kubeconfig: pulumi.Output[str], args: AgentPoolArgs) -> AgentPool:
        provider = k8s.Provider(f"{cluster}-agents-k8s", kubeconfig=pulumi.Output.secret(kubeconfig),
                                enable_server_side_apply=True, opts=in_parent)
        return AgentPool(f"{cluster}-agents", args, pulumi.ResourceOptions(parent=parent, providers=[provider]))

    pools = {}
    if settings.pools:
        pools["aks"] = pool_on("aks", cluster_kubeconfig, AgentPoolArgs(
            settings, settings.pools, settings.install_keda, registry_login_server, credential, pool_taints))
    for site in settings.edge_sites:
        pools[f"edge-{site.name}"] = pool_on(f"edge-{site.name}", config.require_secret(site.kubeconfig_secret_key),
                                             AgentPoolArgs(settings, site.pools, site.install_keda,
                                                           registry_login_server, credential))
    return pools
