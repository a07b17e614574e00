"""Role assignments the platform needs, granted to managed identities with least privilege."""
import uuid

import pulumi
from pulumi_azure_native import authorization

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"


def role_assignment(name: str, *, subscription_id: pulumi.Input[str], role: str, scope: pulumi.Input[str],
                    principal_id: pulumi.Input[str], parent: pulumi.Resource) -> authorization.RoleAssignment:
    """Grant `role` on `scope` to a managed identity; the assignment id is derived, so re-runs change nothing."""
    assignment_id = pulumi.Output.all(scope, principal_id).apply(
        lambda parts: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{parts[0]}|{parts[1]}|{role}")))
    definition = pulumi.Output.concat(
        "/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/", role)
    return authorization.RoleAssignment(
        name, role_assignment_name=assignment_id, scope=scope, principal_id=principal_id,
        principal_type="ServicePrincipal", role_definition_id=definition,
        opts=pulumi.ResourceOptions(parent=parent))


class PlatformAccess(pulumi.ComponentResource):
    """AcrPull for the kubelet identity on the registry; Network Contributor for the cluster identity on the
    internal load balancer subnet and on its own node subnet (a VNET brought by ARM gets no automatic grant)."""

    def __init__(self, name: str, *, subscription_id: pulumi.Input[str], registry_id: pulumi.Input[str],
                 kubelet_object_id: pulumi.Input[str], cluster_principal_id: pulumi.Input[str],
                 internal_lb_subnet_id: pulumi.Input[str], node_subnet_id: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:PlatformAccess", name, None, opts)
        role_assignment(f"{name}-kubelet-acrpull", subscription_id=subscription_id, role=ACR_PULL,
                        scope=registry_id, principal_id=kubelet_object_id, parent=self)
        role_assignment(f"{name}-cluster-ilb-network", subscription_id=subscription_id, role=NETWORK_CONTRIBUTOR,
                        scope=internal_lb_subnet_id, principal_id=cluster_principal_id, parent=self)
        role_assignment(f"{name}-cluster-nodes-network", subscription_id=subscription_id, role=NETWORK_CONTRIBUTOR,
                        scope=node_subnet_id, principal_id=cluster_principal_id, parent=self)
        self.register_outputs({})
