"""Wire the agents into a platform stack: AKS pools on the stack's cluster, arm pools on edge k3s sites."""
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from agents.pool import AgentPool, AgentPoolArgs
from agents.settings import AgentsSettings

CONFIG_NAMESPACE = "mlops-edge-kit"
PAT_KEY = "azpToken"


def cluster_credential(settings: AgentsSettings, config: pulumi.Config, pat: pulumi.Output[str]):
    """What agents register with, kept in the cluster's Secret: the PAT, the SP's secret, or nothing."""
    if settings.auth.mode == "pat":
        return pat
    if settings.auth.mode == "sp":
        return config.require_secret(settings.auth.client_secret_key)
    return None


def deploy_agents(settings: AgentsSettings, *, cluster_kubeconfig: pulumi.Output[str],
                  registry_login_server: pulumi.Output[str], parent: pulumi.Resource | None,
                  pool_taints: Mapping[str, Sequence[str]],
                  pools_ready: pulumi.Input[object] | None = None) -> dict[str, AgentPool]:
    """One AgentPool on the AKS cluster ("aks") and one per edge site ("edge-<site>"); none when disabled.

    The PAT (secret config azpToken) registers each pool's placeholder agent at deploy time in every
    auth mode; it reaches the clusters only in mode pat. `pools_ready` (e.g. the stack's Azure DevOps pools)
    makes the placeholders wait until the pools they register into exist.
    """
    if not settings.enabled:
        return {}
    config = pulumi.Config(CONFIG_NAMESPACE)
    pat = config.require_secret(PAT_KEY)
    credential = cluster_credential(settings, config, pat)
    in_parent = pulumi.ResourceOptions(parent=parent)

    def pool_on(cluster: str, kubeconfig: pulumi.Output[str], pools, install_keda: bool, taints) -> AgentPool:
        provider = k8s.Provider(f"{cluster}-agents-k8s", kubeconfig=pulumi.Output.secret(kubeconfig),
                                enable_server_side_apply=True, opts=in_parent)
        args = AgentPoolArgs(settings, pools, install_keda, registry_login_server, pat, credential, taints,
                             pools_ready)
        return AgentPool(f"{cluster}-agents", args, pulumi.ResourceOptions(parent=parent, providers=[provider]))

    agent_pools = {}
    if settings.pools:
        agent_pools["aks"] = pool_on("aks", cluster_kubeconfig, settings.pools, settings.install_keda, pool_taints)
    for site in settings.edge_sites:
        agent_pools[f"edge-{site.name}"] = pool_on(f"edge-{site.name}", config.require_secret(site.kubeconfig_secret_key),
                                                   site.pools, site.install_keda,
                                                   {pool.arch: pool.tolerate for pool in site.pools})
    return agent_pools
