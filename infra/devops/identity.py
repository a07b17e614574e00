"""The managed identity Azure Pipelines signs in as (workload identity federation), and what it may touch."""
import uuid
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, managedidentity

from infra.access.roles import role_assignment

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
AKS_CLUSTER_USER = "4abbcc35-e782-43d8-92c5-2d3f1bd2253f"
AKS_RBAC_WRITER = "a7ffa36f-339b-4b5c-8bdf-e2c188b2c0eb"
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
IMPORT_ACTIONS = ["Microsoft.ContainerRegistry/registries/read",
                  "Microsoft.ContainerRegistry/registries/importImage/action"]


@dataclass(frozen=True)
class PipelineScopes:
    """The Azure resources of one env that its pipelines deploy to."""

    subscription_id: pulumi.Input[str]
    resource_group: pulumi.Input[str]
    location: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    cluster_id: pulumi.Input[str]
    key_vault_id: pulumi.Input[str]
    app_namespace: str
    promote_from_registry_id: pulumi.Input[str] | None = None


class PipelineIdentity(pulumi.ComponentResource):
    """A user-assigned identity with least-privilege roles; service connections federate with it."""

    def __init__(self, name: str, *, scopes: PipelineScopes, tags: dict[str, str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:devops:PipelineIdentity", name, None, opts)
        self._name, self._scopes = name, scopes
        self._credentials: list[pulumi.Resource] = []  # Azure refuses concurrent credential writes on one identity
        self.identity = managedidentity.UserAssignedIdentity(
            name, resource_name_=name, resource_group_name=scopes.resource_group, location=scopes.location,
            tags=tags, opts=pulumi.ResourceOptions(parent=self))
        self.client_id, self.tenant_id = self.identity.client_id, self.identity.tenant_id
        namespace_scope = pulumi.Output.concat(scopes.cluster_id, "/namespaces/", scopes.app_namespace)
        for suffix, role, scope in (("reader", READER, _resource_group_id(scopes)),
                                    ("acr-push", ACR_PUSH, scopes.registry_id),
                                    ("key-vault-secrets", KEY_VAULT_SECRETS_USER, scopes.key_vault_id),
                                    ("aks-user", AKS_CLUSTER_USER, scopes.cluster_id),
                                    ("aks-namespace-writer", AKS_RBAC_WRITER, namespace_scope)):
            self._grant(suffix, role, scope, self)
        if scopes.promote_from_registry_id is not None:
            self._grant("promote-source-pull", ACR_PULL, scopes.promote_from_registry_id, self)
            role_id, definition = self._import_role()
            self._grant("promote-import", role_id, scopes.registry_id, definition)
        self.register_outputs({"clientId": self.client_id})

    def federate(self, suffix: str, connection) -> None:
        """Trust the tokens Azure DevOps issues for one service connection (its WIF issuer and subject).

        Credentials are written one after another: Azure rejects concurrent federated-credential writes
        on the same identity (ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity).
        """
        credential = managedidentity.FederatedIdentityCredential(
            f"{self._name}-{suffix}", federated_identity_credential_resource_name=suffix,
            resource_group_name=self._scopes.resource_group, resource_name_=self.identity.name,
            issuer=connection.workload_identity_federation_issuer,
            subject=connection.workload_identity_federation_subject, audiences=[TOKEN_EXCHANGE_AUDIENCE],
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._credentials[-1:]))
        self._credentials.append(credential)

    def _grant(self, suffix: str, role: str, scope: pulumi.Input[str], parent: pulumi.Resource) -> None:
        role_assignment(f"{self._name}-{suffix}", subscription_id=self._scopes.subscription_id, role=role,
                        scope=scope, principal_id=self.identity.principal_id, parent=parent)

    def _import_role(self) -> tuple[str, authorization.RoleDefinition]:
        """A custom role that only imports images into this env's registry (promotion by `az acr import`)."""
        stack = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"  # role names are tenant-wide
        role_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stack}/{self._name}/acr-import"))
        definition = authorization.RoleDefinition(
            f"{self._name}-acr-import", role_definition_id=role_id, role_name=f"ACR image importer ({stack})",
            description="Import images into one registry (promotion between environments).",
            scope=self._scopes.registry_id, assignable_scopes=[self._scopes.registry_id],
            permissions=[{"actions": IMPORT_ACTIONS}], opts=pulumi.ResourceOptions(parent=self))
        return role_id, definition  # assignments are children of the definition, so they follow it


def _resource_group_id(scopes: PipelineScopes) -> pulumi.Output[str]:
    return pulumi.Output.concat("/subscriptions/", scopes.subscription_id, "/resourceGroups/", scopes.resource_group)
