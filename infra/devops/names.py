"""Names of the Azure DevOps objects one env creates; the pipeline templates refer to the same names."""
from dataclasses import dataclass

from agents.settings import AgentsSettings
from infra.devops.settings import DevOpsSettings


@dataclass(frozen=True)
class DevOpsNames:
    environment: str
    azure_connection: str
    registry_connection: str
    platform_variable_group: str
    edge_connections: dict[str, str]

    def service_connections(self) -> list[str]:
        return [self.azure_connection, self.registry_connection, *self.edge_connections.values()]


def devops_names(settings: DevOpsSettings, env: str) -> DevOpsNames:
    return DevOpsNames(
        environment=settings.environment_name(env), azure_connection=f"azure-{env}", registry_connection=f"acr-{env}",
        platform_variable_group=f"mlops-{env}-platform",
        edge_connections={site.name: f"k3s-{site.name}" for site in settings.edge_sites})


def pool_arches(agents: AgentsSettings) -> dict[str, str]:
    """Every Azure DevOps pool the agents settings serve (AKS and edge sites), with its architecture."""
    pools = list(agents.pools) + [pool for site in agents.edge_sites for pool in site.pools]
    return {pool.pool_name: pool.arch for pool in pools}
