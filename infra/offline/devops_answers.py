"""What Azure DevOps would answer for the offline plan: numeric ids, project and group lookups, WIF issuers.

AzureMocks (infra/offline/mocks.py) asks these first for every resource and function.
"""
import zlib

from infra.offline import ids

PREFIX = "azuredevops:"
NUMERIC_ID_TYPES = ("Pool", "Queue", "Environment", "VariableGroup", "CheckApproval", "PipelineAuthorization")


def offline_resource(typ: str, name: str, inputs: dict) -> tuple[str, dict] | None:
    """(id, state) for an Azure DevOps resource, the pipeline identity or the promotion source; None otherwise."""
    if typ == "azure-native:managedidentity:UserAssignedIdentity":
        return identity_state(name, inputs)
    if typ == "pulumi:pulumi:StackReference":
        stack = inputs.get("name", name)
        return stack, {"name": stack, "outputs": {"registryId": f"[registryId output of stack {stack}]"}}
    if not typ.startswith(PREFIX):
        return None
    kind = typ.rsplit(":", 1)[-1]
    numeric = kind in NUMERIC_ID_TYPES
    resource_id = str(zlib.crc32(f"{typ}/{name}".encode()) % 100000) if numeric else ids.stable_uuid(typ, name)
    state = dict(inputs)
    scheme = inputs.get("serviceEndpointAuthenticationScheme")
    if kind.startswith("ServiceEndpoint") and scheme == "WorkloadIdentityFederation":
        organization_id = ids.stable_uuid("azure-devops-organization")
        state["workloadIdentityFederationIssuer"] = f"https://login.microsoftonline.com/{ids.TENANT_ID}/v2.0"
        state["workloadIdentityFederationSubject"] = f"/eid1/c/pub/t/mock/a/mock/sc/{organization_id}/{resource_id}"
    return resource_id, state


def identity_state(name: str, inputs: dict) -> tuple[str, dict]:
    group = inputs.get("resourceGroupName", "rg")
    resource_id = (f"/subscriptions/{ids.SUBSCRIPTION_ID}/resourceGroups/{group}/providers/"
                   f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}")
    identity = {"clientId": ids.stable_uuid(name, "client"), "principalId": ids.stable_uuid(name, "principal")}
    return resource_id, {**inputs, **identity, "name": inputs.get("resourceName", name), "tenantId": ids.TENANT_ID}


def devops_call(token: str, args: dict) -> dict | None:
    """The result of an Azure DevOps data source; None for any other provider's function."""
    if token == "azuredevops:index/getProject:getProject":
        project_id = ids.stable_uuid("project", args.get("name", ""))
        return {"id": project_id, "projectId": project_id, "name": args.get("name")}
    if token == "azuredevops:index/getGroup:getGroup":
        name = args.get("name", "")
        return {"id": ids.stable_uuid("group", name), "originId": ids.stable_uuid("group-origin", name),
                "name": name, "projectId": args.get("projectId")}
    return None
