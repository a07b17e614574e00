"""AKS joined to the ML workspace declaratively: the AzureML extension, then a Kubernetes compute target."""
import pulumi
from pulumi_azure_native import kubernetesconfiguration, machinelearningservices

from infra.placement import Placement
from infra.settings import InferenceTls

ML_NAMESPACE = "azureml"


class MlAttachment(pulumi.ComponentResource):
    """Training on AKS through the workspace; inference too when TLS is configured (internal load balancer)."""

    def __init__(self, name: str, *, placement: Placement, cluster_name: pulumi.Input[str],
                 cluster_id: pulumi.Input[str], workspace_name: pulumi.Input[str], inference_tls: InferenceTls | None,
                 depends_on: list[pulumi.Resource], opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:MlAttachment", name, None, opts)
        extension = kubernetesconfiguration.Extension(
            f"{name}-extension", resource_group_name=placement.resource_group, cluster_name=cluster_name,
            cluster_rp="Microsoft.ContainerService", cluster_resource_name="managedClusters",
            extension_name="azureml", extension_type="Microsoft.AzureML.Kubernetes", release_train="stable",
            auto_upgrade_minor_version=True, identity={"type": "SystemAssigned"},
            scope={"cluster": {"release_namespace": ML_NAMESPACE}},
            configuration_settings=extension_settings(inference_tls),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on))
        self.compute = machinelearningservices.Compute(
            f"{name}-compute", resource_group_name=placement.resource_group, location=placement.location,
            tags=placement.tags, workspace_name=workspace_name, compute_name="aks",
            identity={"type": "SystemAssigned"},
            properties={"compute_type": "Kubernetes", "resource_id": cluster_id,
                        "description": "AKS attached through the AzureML extension",
                        "properties": {"namespace": ML_NAMESPACE, "default_instance_type": "defaultinstancetype"}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[extension]))
        self.register_outputs({"computeName": self.compute.name})


def extension_settings(inference_tls: InferenceTls | None) -> dict[str, str]:
    """AzureML extension settings: training always; inference only over TLS, behind the internal load balancer."""
    settings = {"enableTraining": "True", "enableInference": "False", "allowInsecureConnections": "False",
                "installNvidiaDevicePlugin": "False", "installDcgmExporter": "False"}
    if inference_tls:
        settings |= {"enableInference": "True", "inferenceRouterServiceType": "loadBalancer",
                     "internalLoadBalancerProvider": "azure", "inferenceRouterHA": "True",
                     "sslCname": inference_tls.ssl_cname, "sslSecret": inference_tls.ssl_secret}
    return settings
