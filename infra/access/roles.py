"""Role assignments the platform needs, granted to managed identities with least privilege."""
import uuid

import pulumi
from pulumi_azure_native import authorization

from infra.access.kube_ready import KubernetesAccessReady

# Built-in role ids: learn.microsoft.com/azure/role-based-access-control/built-in-roles
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
AKS_RBAC_CLUSTER_ADMIN = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"  # "Lets you manage all resources in the cluster"


def role_assignment(name: str, *, subscription_id: pulumi.Input[str], role: str, scope: pulumi.Input[str],
                    principal_id: pulumi.Input[str], parent: pulumi.Resource,
                    principal_type: pulumi.Input[str] = "ServicePrincipal") -> authorization.RoleAssignment:
    """Grant `role` on `scope` to a principal of `principal_type` (a managed identity by default); the
    assignment id is derived, so re-runs change nothing."""
    assignment_id = pulumi.Output.all(scope, principal_id).apply(
        lambda parts: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{parts[0]}|{parts[1]}|{role}")))
    definition = pulumi.Output.concat(
        "/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/", role)
    return authorization.RoleAssignment(
        name, role_assignment_name=assignment_id, scope=scope, principal_id=principal_id,
        principal_type=principal_type, role_definition_id=definition,
        opts=pulumi.ResourceOptions(parent=parent))


class PlatformAccess(pulumi.ComponentResource):
    """AcrPull for the kubelet identity on the registry; AcrPush for the image-build compute cluster's identity
    (it pulls base images and pushes what it builds); Network Contributor for the cluster identity on its node
    subnet, where its internal load balancers go too (a VNET brought by ARM gets no automatic grant)."""

    def __init__(self, name: str, *, subscription_id: pulumi.Input[str], registry_id: pulumi.Input[str],
                 kubelet_object_id: pulumi.Input[str], cluster_principal_id: pulumi.Input[str],
                 node_subnet_id: pulumi.Input[str], image_build_principal_id: pulumi.Input[str] | None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:PlatformAccess", name, None, opts)
        role_assignment(f"{name}-kubelet-acrpull", subscription_id=subscription_id, role=ACR_PULL,
                        scope=registry_id, principal_id=kubelet_object_id, parent=self)
        if image_build_principal_id is not None:
            role_assignment(f"{name}-image-build-acrpush", subscription_id=subscription_id, role=ACR_PUSH,
                            scope=registry_id, principal_id=image_build_principal_id, parent=self)
        role_assignment(f"{name}-cluster-nodes-network", subscription_id=subscription_id, role=NETWORK_CONTRIBUTOR,
                        scope=node_subnet_id, principal_id=cluster_principal_id, parent=self)
        self.register_outputs({})


class ClusterAdmins(pulumi.ComponentResource):
    """Kubernetes access on an Entra ID + Azure RBAC cluster without local accounts: "Azure Kubernetes Service
    RBAC Cluster Admin" on the cluster for the principal running `pulumi up` and for the configured admin groups
    (Owner and Contributor carry no Kubernetes data actions); the deployer's principalType is derived from its login
    (infra.access.principal). `kubeconfig` resolves only once the API server lets the deployer in, so every
    Kubernetes provider made from it waits for the grant and its propagation."""

    def __init__(self, name: str, *, subscription_id: pulumi.Input[str], cluster_id: pulumi.Input[str],
                 deployer_object_id: pulumi.Input[str], deployer_type: pulumi.Input[str], admin_group_ids: list[str],
                 kubeconfig: pulumi.Output[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:ClusterAdmins", name, None, opts)
        grants = [role_assignment(f"{name}-deployer", subscription_id=subscription_id, role=AKS_RBAC_CLUSTER_ADMIN,
                                  scope=cluster_id, principal_id=deployer_object_id, parent=self,
                                  principal_type=deployer_type)]
        grants += [role_assignment(f"{name}-group-{group}", subscription_id=subscription_id,
                                   role=AKS_RBAC_CLUSTER_ADMIN, scope=cluster_id, principal_id=group, parent=self,
                                   principal_type="Group") for group in admin_group_ids]
        ready = KubernetesAccessReady(f"{name}-ready", cluster_id=cluster_id, kubeconfig=kubeconfig,
                                      grants=[grant.id for grant in grants],
                                      opts=pulumi.ResourceOptions(parent=self, depends_on=grants))
        self.kubeconfig = pulumi.Output.secret(pulumi.Output.all(kubeconfig, ready.id).apply(lambda values: values[0]))
        self.register_outputs({})
