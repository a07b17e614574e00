"""Declare one env's Azure DevOps side: agent pools and queues, service connections, platform facts, environment.

Credentials: the provider reads AZDO_PERSONAL_ACCESS_TOKEN (or the AZDO_* service principal settings) from the
environment of `pulumi up`, unless `devops.patSecretKey` names a secret config key holding the PAT.
"""
import pulumi
import pulumi_azuredevops as azuredevops
import pulumi_kubernetes as k8s
from pulumi_azure_native import authorization

from agents.pool import capabilities
from agents.settings import AgentsSettings
from infra.devops.identity import PipelineIdentity, PipelineScopes
from infra.devops.names import DevOpsNames, devops_names, pool_arches
from infra.devops.settings import ORIGIN_ID, Approval, DevOpsSettings, agents_disagreements

CONFIG_NAMESPACE = "mlops-edge-kit"
WIF = "WorkloadIdentityFederation"


class DevOpsProject:
    """The existing Azure DevOps project this env's objects live in, and how to declare them there."""

    def __init__(self, settings: DevOpsSettings, env: str, parent: pulumi.Resource | None):
        config = pulumi.Config(CONFIG_NAMESPACE)
        token = config.require_secret(settings.pat_secret_key) if settings.pat_secret_key else None
        self.provider = azuredevops.Provider(f"devops-{env}", org_service_url=settings.organization_url,
                                             personal_access_token=token, opts=pulumi.ResourceOptions(parent=parent))
        self.opts = pulumi.ResourceOptions(parent=parent, provider=self.provider)
        lookup = pulumi.InvokeOutputOptions(provider=self.provider)
        self.id = azuredevops.get_project_output(name=settings.project, opts=lookup).id
        self.settings, self.env, self._lookup = settings, env, lookup

    def authorize(self, name: str, resource_id: pulumi.Input[str], kind: str, *, all_pipelines: bool = False) -> None:
        """Let the configured pipeline (or, for agent queues without one, every pipeline) use a resource."""
        pipeline_id = self.settings.pipeline_id
        if pipeline_id is None and not all_pipelines:
            return  # a project administrator permits the first run that uses it
        azuredevops.PipelineAuthorization(f"{name}-authorization", project_id=self.id, resource_id=resource_id,
                                          type=kind, pipeline_id=pipeline_id, opts=self.opts)

    def approver_ids(self, approval: Approval) -> list[pulumi.Input[str]]:
        """Origin ids as given; group names looked up in the project."""
        return [approver if ORIGIN_ID.match(approver) else
                azuredevops.get_group_output(project_id=self.id, name=approver, opts=self._lookup).origin_id
                for approver in approval.approvers]


def agent_pools(project: DevOpsProject, agents: AgentsSettings) -> dict[str, azuredevops.Pool]:
    """One pool per architecture and site, named exactly as the agents settings name them, queued in the project.

    Agents never update themselves: the agent image pins the version.
    """
    pools = {}
    for pool_name in pool_arches(agents):
        pool = azuredevops.Pool(f"pool-{pool_name}", name=pool_name, auto_provision=False, auto_update=False,
                                opts=project.opts)
        queue = azuredevops.Queue(f"queue-{pool_name}", project_id=project.id, agent_pool_id=pool.id, opts=project.opts)
        project.authorize(f"queue-{pool_name}", queue.id, "queue", all_pipelines=True)
        pools[pool_name] = pool
    return pools


def azure_connections(project: DevOpsProject, names: DevOpsNames, identity: PipelineIdentity,
                      platform: dict[str, pulumi.Output], subscription_id: pulumi.Input[str]):
    """The ARM and container registry connections, both federated with the pipeline identity (no secrets)."""
    arm = azuredevops.ServiceEndpointAzureRM(
        names.azure_connection, project_id=project.id, service_endpoint_name=names.azure_connection,
        service_endpoint_authentication_scheme=WIF, credentials={"serviceprincipalid": identity.client_id},
        azurerm_spn_tenantid=identity.tenant_id, azurerm_subscription_id=subscription_id,
        azurerm_subscription_name=f"{project.env} platform subscription", resource_group=platform["resourceGroupName"],
        description=f"Azure Resource Manager for the {project.env} platform (workload identity federation)",
        opts=project.opts)
    identity.federate("azure-devops-arm", arm)
    registry_name = platform["registryLoginServer"].apply(lambda server: server.split(".", 1)[0])
    acr = azuredevops.ServiceEndpointAzureEcr(
        names.registry_connection, project_id=project.id, service_endpoint_name=names.registry_connection,
        service_endpoint_authentication_scheme=WIF, credentials={"serviceprincipalid": identity.client_id},
        azurecr_spn_tenantid=identity.tenant_id, azurecr_subscription_id=subscription_id,
        azurecr_subscription_name=f"{project.env} platform subscription", resource_group=platform["resourceGroupName"],
        azurecr_name=registry_name, description=f"Container registry of the {project.env} platform (admin user off)",
        opts=project.opts)
    identity.federate("azure-devops-acr", acr)
    for connection, endpoint in ((names.azure_connection, arm), (names.registry_connection, acr)):
        project.authorize(connection, endpoint.id, "endpoint")
    return arm, acr


def app_namespaces(settings: DevOpsSettings, agents: AgentsSettings, aks_kubeconfig: pulumi.Input[str],
                   parent: pulumi.Resource | None) -> None:
    """The namespace applications are deployed to, on AKS and each edge site; pods there must be restricted.

    On AKS the pipeline identity may write only in this namespace.
    """
    config = pulumi.Config(CONFIG_NAMESPACE)
    kubeconfigs = {"aks": aks_kubeconfig} | {f"edge-{site}": config.require_secret(key)
                                             for site, key in settings.kubeconfig_keys(agents).items()}
    labels = {"app.kubernetes.io/part-of": "mlops-edge-kit", "pod-security.kubernetes.io/enforce": "restricted"}
    for cluster, kubeconfig in kubeconfigs.items():
        provider = k8s.Provider(f"{cluster}-apps-k8s", kubeconfig=pulumi.Output.secret(kubeconfig),
                                enable_server_side_apply=True, opts=pulumi.ResourceOptions(parent=parent))
        k8s.core.v1.Namespace(f"{cluster}-apps-namespace", metadata={"name": settings.app_namespace, "labels": labels},
                              opts=pulumi.ResourceOptions(parent=parent, provider=provider))


def edge_connections(project: DevOpsProject, names: DevOpsNames,
                     agents: AgentsSettings) -> dict[str, azuredevops.ServiceEndpointKubernetes]:
    """A Kubernetes connection per edge site, from the site's kubeconfig in secret config."""
    config, connections = pulumi.Config(CONFIG_NAMESPACE), {}
    keys = project.settings.kubeconfig_keys(agents)
    for site in project.settings.edge_sites:
        name = names.edge_connections[site.name]
        kubeconfig = {"kube_config": config.require_secret(keys[site.name]), "accept_untrusted_certs": False}
        connections[site.name] = azuredevops.ServiceEndpointKubernetes(
            name, project_id=project.id, service_endpoint_name=name, authorization_type="Kubeconfig",
            apiserver_url=site.api_server_url, kubeconfig=kubeconfig,
            description=f"k3s at edge site {site.name}", opts=project.opts)
        project.authorize(name, connections[site.name].id, "endpoint")
    return connections


def deployment_environment(project: DevOpsProject, names: DevOpsNames) -> azuredevops.Environment:
    """The environment deployment jobs target, gated by an approval check when approvers are set."""
    environment = azuredevops.Environment(f"environment-{names.environment}", project_id=project.id,
                                          name=names.environment, description=f"The {project.env} platform",
                                          opts=project.opts)
    approval = project.settings.approval
    if approval is not None:
        azuredevops.CheckApproval(
            f"environment-{names.environment}-approval", project_id=project.id, target_resource_type="environment",
            target_resource_id=environment.id, approvers=project.approver_ids(approval),
            minimum_required_approvers=approval.minimum_approvers, requester_can_approve=False,
            timeout=approval.timeout_minutes, instructions=approval.instructions, opts=project.opts)
    project.authorize(f"environment-{names.environment}", environment.id, "environment")
    return environment


def platform_group(project: DevOpsProject, names: DevOpsNames, platform: dict[str, pulumi.Output],
                   promote_from_registry_id: pulumi.Output[str] | None):
    """Plain facts of the env the pipeline templates read: registry, cluster, namespace, key vault, promotion source.

    No secret lives here: jobs on the env's in-VNET agents read the key vault's secrets at run time
    (AzureKeyVault@2 through the azure-<env> connection, whose identity holds Key Vault Secrets User on it).
    """
    facts = {"environment": names.environment, "appNamespace": project.settings.app_namespace,
             "keyVaultName": platform["keyVaultName"],
             "resourceGroup": platform["resourceGroupName"], "registryLoginServer": platform["registryLoginServer"],
             "registryName": platform["registryLoginServer"].apply(lambda server: server.split(".", 1)[0]),
             "clusterName": platform["clusterId"].apply(lambda cluster_id: cluster_id.rsplit("/", 1)[-1])}
    if promote_from_registry_id is not None:
        facts["promoteFromRegistryId"] = promote_from_registry_id
    group = azuredevops.VariableGroup(
        f"variable-group-{names.platform_variable_group}", project_id=project.id, name=names.platform_variable_group,
        description=f"Facts of the {project.env} platform for pipelines", allow_access=False,
        variables=[{"name": name, "value": value} for name, value in facts.items()], opts=project.opts)
    project.authorize(f"variable-group-{names.platform_variable_group}", group.id, "variablegroup")
    return group


def promotion_source(settings: DevOpsSettings) -> pulumi.Output[str] | None:
    """The registry id of the env this one promotes images from (its stack output)."""
    if settings.promote_from is None:
        return None
    stack = f"{pulumi.get_organization()}/{pulumi.get_project()}/{settings.promote_from}"
    return pulumi.StackReference(f"promote-from-{settings.promote_from}", stack_name=stack).require_output("registryId")


def deploy_devops(settings: DevOpsSettings, agents: AgentsSettings, *, env: str, platform: dict[str, pulumi.Output],
                  parent: pulumi.Resource | None = None,
                  tags: dict[str, str] | None = None) -> dict[str, pulumi.Output]:
    """Declare the env's Azure DevOps objects; returns stack outputs (nothing when disabled).

    `devopsAgentPools` resolves once the pools exist: an input made from it makes a resource wait for them.

    `tags` go on the Azure resources made here (the pipeline identity); pass the stack's tags.
    """
    if not settings.enabled:
        return {}
    problems = agents_disagreements(settings, agents)
    if problems:
        raise ValueError("; ".join(f"{key}: {problem}" for key, problem in problems))
    names = devops_names(settings, env)
    project = DevOpsProject(settings, env, parent)
    subscription_id = authorization.get_client_config_output().subscription_id
    group_id = pulumi.Output.concat("/subscriptions/", subscription_id, "/resourceGroups/",
                                    platform["resourceGroupName"])
    promote_from = promotion_source(settings)
    scopes = PipelineScopes(
        subscription_id=subscription_id, resource_group=platform["resourceGroupName"], location=platform["location"],
        registry_id=platform["registryId"], cluster_id=platform["clusterId"], app_namespace=settings.app_namespace,
        key_vault_id=pulumi.Output.concat(group_id, "/providers/Microsoft.KeyVault/vaults/", platform["keyVaultName"]),
        promote_from_registry_id=promote_from)
    identity = PipelineIdentity(f"pipelines-{env}", scopes=scopes, tags=tags or {"env": env},
                                opts=pulumi.ResourceOptions(parent=parent))
    app_namespaces(settings, agents, platform["kubeconfig"], parent)
    pools = agent_pools(project, agents)
    azure_connections(project, names, identity, platform, subscription_id)
    edge_connections(project, names, agents)
    platform_group(project, names, platform, promote_from)
    environment = deployment_environment(project, names)
    return {"devopsProjectId": project.id, "devopsEnvironment": environment.name,
            "devopsServiceConnections": names.service_connections(),
            "devopsVariableGroups": [names.platform_variable_group],
            "devopsAgentPools": pulumi.Output.all(*[pools[name].name for name in sorted(pools)]), "pipelineIdentityClientId": identity.client_id,
            "agentDemands": {pool: capabilities(arch) for pool, arch in pool_arches(agents).items()}}
