"""AKS joined to the ML workspace declaratively: the AzureML extension, then a Kubernetes compute target."""
import base64

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import kubernetesconfiguration, machinelearningservices

from infra.components.placement import Placement
from infra.stack.settings import InferenceTls

ML_NAMESPACE = "azureml"
CONFIG_NAMESPACE = "mlops-edge-kit"


class MlAttachment(pulumi.ComponentResource):
    """Training on AKS through the workspace; inference too when TLS is configured (internal load balancer).

    The extension on AKS takes the AKS identity form (`aksAssignedIdentity`; `identity` is the Arc form:
    Microsoft.KubernetesConfiguration extensions API, pulumi_azure_native/kubernetesconfiguration/extension.py).
    """

    def __init__(self, name: str, *, placement: Placement, cluster_name: pulumi.Input[str],
                 cluster_id: pulumi.Input[str], workspace_name: pulumi.Input[str], inference_tls: InferenceTls | None,
                 kubeconfig: pulumi.Output[str], depends_on: list[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:MlAttachment", name, None, opts)
        before_extension = list(depends_on)
        if inference_tls:
            before_extension.append(self._tls_secret(name, inference_tls, kubeconfig))
        extension = kubernetesconfiguration.Extension(
            f"{name}-extension", resource_group_name=placement.resource_group, cluster_name=cluster_name,
            cluster_rp="Microsoft.ContainerService", cluster_resource_name="managedClusters",
            extension_name="azureml", extension_type="Microsoft.AzureML.Kubernetes", release_train="stable",
            auto_upgrade_minor_version=True, aks_assigned_identity={"type": "SystemAssigned"},
            scope={"cluster": {"release_namespace": ML_NAMESPACE}},
            configuration_settings=extension_settings(inference_tls),
            opts=pulumi.ResourceOptions(parent=self, depends_on=before_extension))
        self.compute = machinelearningservices.Compute(
            f"{name}-compute", resource_group_name=placement.resource_group, location=placement.location,
            tags=placement.tags, workspace_name=workspace_name, compute_name="aks",
            identity={"type": "SystemAssigned"},
            properties={"compute_type": "Kubernetes", "resource_id": cluster_id,
                        "description": "AKS attached through the AzureML extension",
                        "properties": {"namespace": ML_NAMESPACE, "default_instance_type": "defaultinstancetype"}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[extension]))
        self.register_outputs({"computeName": self.compute.name})

    def _tls_secret(self, name: str, tls: InferenceTls, kubeconfig: pulumi.Output[str]) -> k8s.core.v1.Secret:
        """The Secret `sslSecret` names, made before the extension that reads it: cert.pem and key.pem in azureml
        (learn.microsoft.com/azure/machine-learning/how-to-secure-kubernetes-online-endpoint, "Configure sslSecret")."""
        config = pulumi.Config(CONFIG_NAMESPACE)
        provider = k8s.Provider(f"{name}-k8s", kubeconfig=kubeconfig, enable_server_side_apply=True,
                                opts=pulumi.ResourceOptions(parent=self))
        on_aks = pulumi.ResourceOptions(parent=self, provider=provider)
        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata={"name": ML_NAMESPACE}, opts=on_aks)
        pem = {"cert.pem": config.require_secret(tls.cert_secret_key), "key.pem": config.require_secret(tls.key_secret_key)}
        return k8s.core.v1.Secret(
            f"{name}-tls", metadata={"name": tls.ssl_secret, "namespace": namespace.metadata["name"]}, type="Opaque",
            data={k: v.apply(lambda text: base64.b64encode(text.encode()).decode()) for k, v in pem.items()},
            opts=on_aks)


def extension_settings(inference_tls: InferenceTls | None) -> dict[str, str]:
    """AzureML extension settings: training always; inference only over TLS, behind the internal load balancer."""
    settings = {"enableTraining": "True", "enableInference": "False", "allowInsecureConnections": "False",
                "installNvidiaDevicePlugin": "False", "installDcgmExporter": "False"}
    if inference_tls:
        settings |= {"enableInference": "True", "inferenceRouterServiceType": "loadBalancer",
                     "internalLoadBalancerProvider": "azure", "inferenceRouterHA": "True",
                     "sslCname": inference_tls.ssl_cname, "sslSecret": inference_tls.ssl_secret}
    return settings
