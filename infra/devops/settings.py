"""Settings of the Azure DevOps side of one environment: the stack config key `mlops-edge-kit:devops`."""
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from agents.settings import DNS_LABEL, ORGANIZATION_URL, AgentsSettings, Model

SECRET_KEY = r"^[A-Za-z][A-Za-z0-9_.-]*$"
ORIGIN_ID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# Azure DevOps reads a Key Vault-linked variable group's vault from its own service, outside the env's VNET,
# so it cannot read the kit's private vaults: pipelines read secrets at run time on the in-VNET agents instead
# (AzureKeyVault@2, https://learn.microsoft.com/azure/devops/pipelines/release/key-vault-in-own-project).
NO_LINKED_GROUP = ("is no longer supported: a Key Vault-linked variable group cannot reach a private key vault "
                   "(Azure DevOps reads it from outside the VNET); remove it and read secrets in the pipeline with "
                   "AzureKeyVault@2 through the azure-<env> connection (pipelines/templates/deploy-aks.yml, "
                   "parameter keyVaultSecrets)")
# The Azure DevOps environment each platform env deploys to (the pipeline templates use the same names).
ENVIRONMENTS = {"qa": "qa", "uat": "uat", "prod": "production"}


def refuse_repeats(values: list[str], what: str) -> None:
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise ValueError(f"{what} {', '.join(twice)} is listed more than once")


def check_organization_url(url: str) -> str:
    """The same organization URLs the agents accept, without a trailing slash."""
    if not ORGANIZATION_URL.match(url):
        raise ValueError(f"'{url}' is not an Azure DevOps organization URL such as https://dev.azure.com/contoso")
    return url.rstrip("/")


class Approval(Model):
    """Who must approve a deployment to this env's Azure DevOps environment."""

    # Azure DevOps group names (resolved in the project) or origin ids (GUIDs) of users or groups.
    approvers: list[str] = Field(min_length=1)
    minimum_approvers: int = Field(1, ge=1)
    timeout_minutes: int = Field(1440, ge=1, le=43200)
    instructions: str = "Check the QA/UAT smoke test results and the model card before approving."

    @field_validator("approvers")
    @classmethod
    def _distinct(cls, approvers: list[str]) -> list[str]:
        if any(not a.strip() for a in approvers):
            raise ValueError("an approver is empty")
        refuse_repeats(approvers, "approver")
        return approvers

    @model_validator(mode="after")
    def _enough_approvers(self):
        if self.minimum_approvers > len(self.approvers):
            raise ValueError(f"minimumApprovers ({self.minimum_approvers}) is more than the "
                             f"{len(self.approvers)} approver(s) listed")
        return self


class EdgeTarget(Model):
    """An edge k3s site the pipelines deploy to, reached with a kubeconfig kept in secret config.

    Without kubeconfigSecretKey, the key of the agents' edge site of the same name is used.
    """

    name: str = Field(pattern=DNS_LABEL)
    kubeconfig_secret_key: str | None = Field(None, pattern=SECRET_KEY)
    api_server_url: str = Field(pattern=r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class DevOpsSettings(Model):
    """The Azure DevOps project slice this env owns: pools, connections, the platform variable group, environment."""

    enabled: bool = False
    organization_url: Annotated[str, AfterValidator(check_organization_url)] | None = None
    project: str | None = Field(None, min_length=1, max_length=64)
    # Empty: the provider reads AZDO_PERSONAL_ACCESS_TOKEN (or AZDO_* service principal settings) from the environment.
    pat_secret_key: str | None = Field(None, pattern=SECRET_KEY)
    # The pipeline allowed to use this env's connections, pools and variable groups;
    # empty: a project administrator permits each on its first use.
    pipeline_id: int | None = Field(None, ge=1)
    app_namespace: str = Field("ml-apps", pattern=DNS_LABEL)
    environment: str | None = Field(None, pattern=DNS_LABEL)
    approval: Approval | None = None
    promote_from: Literal["qa", "uat"] | None = None
    edge_sites: list[EdgeTarget] = []
    # Removed (see NO_LINKED_GROUP): a stack file that still sets it is refused, naming the key.
    variable_group: object = Field(None, exclude=True)

    @field_validator("variable_group")
    @classmethod
    def _no_linked_variable_group(cls, value):
        raise ValueError(NO_LINKED_GROUP)

    @field_validator("edge_sites")
    @classmethod
    def _unique_sites(cls, sites: list[EdgeTarget]) -> list[EdgeTarget]:
        refuse_repeats([site.name for site in sites], "edge site")
        return sites

    @model_validator(mode="after")
    def _complete_when_enabled(self):
        if not self.enabled:
            return self
        missing = [key for key, value in (("organizationUrl", self.organization_url), ("project", self.project))
                   if value is None]
        if missing:
            raise ValueError(f"devops is enabled but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                             f"not set")
        return self

    def environment_name(self, env: str) -> str:
        """The Azure DevOps environment of this platform env (prod deploys to `production`)."""
        return self.environment or ENVIRONMENTS.get(env, env)

    def kubeconfig_keys(self, agents: AgentsSettings) -> dict[str, str]:
        """Edge site name -> the secret config key of its kubeconfig (its own, or the agents' site's)."""
        agent_keys = {site.name: site.kubeconfig_secret_key for site in agents.edge_sites}
        return {site.name: site.kubeconfig_secret_key or agent_keys[site.name] for site in self.edge_sites}

    def secret_config_keys(self, agents: AgentsSettings) -> list[str]:
        """Secret config keys (without the project prefix) that deploying the DevOps side reads."""
        if not self.enabled:
            return []
        return ([self.pat_secret_key] if self.pat_secret_key else []) + list(self.kubeconfig_keys(agents).values())


def agents_disagreements(devops: DevOpsSettings, agents: AgentsSettings) -> list[tuple[str, str]]:
    """(key path, problem) where the DevOps settings contradict the agents settings of the same stack."""
    if not devops.enabled:
        return []
    problems = []
    if agents.enabled and agents.organization_url and agents.organization_url != devops.organization_url:
        problems.append(("devops.organizationUrl", f"{devops.organization_url} differs from agents.organizationUrl "
                                                   f"({agents.organization_url}); the agents would register elsewhere"))
    agent_sites = {site.name: site for site in agents.edge_sites}
    for index, site in enumerate(devops.edge_sites):
        twin = agent_sites.get(site.name)
        if twin is None and site.kubeconfig_secret_key is None:
            problems.append((f"devops.edgeSites[{index}].kubeconfigSecretKey",
                             f"is not set and agents.edgeSites has no site named {site.name} to take it from"))
        elif twin and site.kubeconfig_secret_key and twin.kubeconfig_secret_key != site.kubeconfig_secret_key:
            problems.append((f"devops.edgeSites[{index}].kubeconfigSecretKey",
                             f"{site.kubeconfig_secret_key} differs from the agents' edge site {site.name} "
                             f"({twin.kubeconfig_secret_key}); one site has one kubeconfig"))
    return problems
