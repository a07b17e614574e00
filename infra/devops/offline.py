"""What Azure DevOps would answer for the offline plan: numeric ids, project and group lookups, WIF issuers.

AzureMocks (infra/offline/mocks.py) asks these first for every resource and function.
"""
import zlib

from infra.offline.mocks import SUBSCRIPTION_ID, TENANT_ID, stable_uuid

PREFIX = "azuredevops:"
ORGANIZATION_ID = stable_uuid("azure-devops-organization")
NUMERIC_ID_TYPES = ("Pool", "Queue", "Environment", "VariableGroup", "CheckApproval", "PipelineAuthorization")


def offline_resource(typ: str, name: str, inputs: dict) -> tuple[str, dict] | None:
    """(id, state) for an Azure DevOps resource or the pipeline identity; None for any other type."""
    if typ == "azure-native:managedidentity:UserAssignedIdentity":
        return identity_state(name, inputs)
    if not typ.startswith(PREFIX):
        return None
    kind = typ.rsplit(":", 1)[-1]
    numeric = kind in NUMERIC_ID_TYPES
    resource_id = str(zlib.crc32(f"{typ}/{name}".encode()) % 100000) if numeric else stable_uuid(typ, name)
    state = dict(inputs)
    if kind.startswith("ServiceEndpoint") and inputs.get("serviceEndpointAuthenticationScheme") == "WorkloadIdentityFederation":
        state["workloadIdentityFederationIssuer"] = f"https://login.microsoftonline.com/{stable_uuid('tenant')}/v2.0"
        state["workloadIdentityFederationSubject"] = f"/eid1/c/pub/t/mock/a/mock/sc/{ORGANIZATION_ID}/{resource_id}"
    return resource_id, state


def identity_state(name: str, inputs: dict) -> tuple[str, dict]:
    group = inputs.get("resourceGroupName", "rg")
    resource_id = (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{group}/providers/"
                   f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}")
    return resource_id, {**inputs, "name": inputs.get("resourceName", name), "clientId": stable_uuid(name, "client"),
                         "principalId": stable_uuid(name, "principal"), "tenantId": TENANT_ID}


def devops_call(token: str, args: dict) -> dict | None:
    """The result of an Azure DevOps data source; None for any other provider's function."""
    if token == "azuredevops:index/getProject:getProject":
        project_id = stable_uuid("project", args.get("name", ""))
        return {"id": project_id, "projectId": project_id, "name": args.get("name")}
    if token == "azuredevops:index/getGroup:getGroup":
        return {"id": stable_uuid("group", args.get("name", "")), "originId": stable_uuid("group-origin", args.get("name", "")),
                "name": args.get("name"), "projectId": args.get("projectId")}
    return None
