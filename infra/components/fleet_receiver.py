"""`fleet.receive` on the stack's AKS: the sites' Flux reports land in the env's registry (fleet-status/<env>),
where the promote pipeline reads them.

One replica (the status store's only writer; `Recreate`, so an update never runs two), behind an Azure load
balancer of the receiver's exposure:
- `public`: a public load balancer (no internal annotation) under an Azure DNS name (annotation
  `azure-dns-label-name`: <label>.<location>.cloudapp.azure.com, learn.microsoft.com/azure/aks/static-ip, "Apply a
  DNS label to the service"), open only to the sites: `loadBalancerSourceRanges`, which AKS enforces in the NSG and
  on the host (learn.microsoft.com/azure/aks/configure-load-balancer-standard, "Restrict inbound traffic to specific
  IP ranges");
- `internal`: an internal load balancer at a fixed private IP of the node subnet (annotations
  `azure-load-balancer-internal` and `azure-load-balancer-ipv4`: learn.microsoft.com/azure/aks/internal-lb,
  "Specify an IP address"), for sites joined to the VNET by a VPN or ExpressRoute.
Either keeps the client's address (`externalTrafficPolicy: Local`: kubernetes.io/docs/tasks/access-application-cluster/
create-external-load-balancer, "Preserving the client source IP"), so the NetworkPolicy admits only the sites.
TLS certificate and key, the master report key and the registry token come from secret config or the stack,
never plain; the token may read and write fleet-status/<env> and nothing else.
"""
import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import containerregistry

from infra.components.edge_registry import scope_actions, scoped_token
from infra.stack.settings import FleetReceiver as Settings

CONFIG_NAMESPACE = "mlops-edge-kit"
NAMESPACE = "fleet-receiver"
APP = "fleet-receiver"
UID = 10001
TLS_DIR = "/etc/fleet-receiver/tls"


def status_repository(env: str) -> str:
    """The fleet environment's status store in the registry (fleet/receiving/store.py keeps the same name)."""
    return f"fleet-status/{env}"


def receiver_args(settings: Settings) -> list[str]:
    """The container's command: the kit's fleet.receive over HTTPS into the registry store."""
    return ["python", "-m", "common.cli", "fleet.receive", "--env", settings.environment, "--statuses", "registry",
            "--listen", f"0.0.0.0:{settings.port}", "--cert", f"{TLS_DIR}/tls.crt", "--key", f"{TLS_DIR}/tls.key"]


def container(settings: Settings, image: pulumi.Input[str], env_secret: pulumi.Input[str]) -> dict:
    """The receiver's container: non-root, read-only root, no privilege, every capability dropped."""
    env = [{"name": name, "valueFrom": {"secretKeyRef": {"name": env_secret, "key": name}}}
           for name in ("FLEET_WEBHOOK_KEY", "FLEET_REGISTRY_USER", "FLEET_REGISTRY_PASSWORD")]
    probe = {"tcpSocket": {"port": "https"}, "periodSeconds": 10}
    return {
        "name": APP, "image": image, "command": receiver_args(settings), "workingDir": "/kit",
        "env": [*env, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}, {"name": "HOME", "value": "/tmp"}],
        "ports": [{"name": "https", "containerPort": settings.port, "protocol": "TCP"}],
        "readinessProbe": {**probe, "initialDelaySeconds": 2}, "livenessProbe": {**probe, "initialDelaySeconds": 20},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False, "privileged": False,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "tls", "mountPath": TLS_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def network_policy_spec(settings: Settings, sources: list[str]) -> dict:
    """Ingress to the receiver only from the sites' addresses, only on its port."""
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": APP}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": cidr}} for cidr in sources],
                         "ports": [{"protocol": "TCP", "port": settings.port}]}]}


def service_spec(settings: Settings, sources: list[str], dns_label: str) -> tuple[dict, dict]:
    """(annotations, spec) of the load balancer: public under the DNS label, open to `sources` only; or internal at
    the fixed IP."""
    spec = {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "selector": {"app.kubernetes.io/name": APP},
            "ports": [{"name": "https", "port": settings.port, "targetPort": "https", "protocol": "TCP"}]}
    if settings.exposure == "public":
        return ({"service.beta.kubernetes.io/azure-dns-label-name": dns_label},
                {**spec, "loadBalancerSourceRanges": list(sources)})
    return ({"service.beta.kubernetes.io/azure-load-balancer-internal": "true",
             "service.beta.kubernetes.io/azure-load-balancer-ipv4": str(settings.load_balancer_ip)}, spec)


class FleetReceiverDeployment(pulumi.ComponentResource):
    """The receiver's registry token, then its Namespace, ServiceAccount, Secrets, Deployment, Service and
    NetworkPolicy on AKS; `address` is what the sites post to (https://<DNS name or fixed IP>:<port>)."""

    def __init__(self, name: str, *, settings: Settings, resource_group: pulumi.Input[str],
                 registry: containerregistry.Registry, kubeconfig: pulumi.Output[str], sources: list[str],
                 location: str, name_prefix: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:FleetReceiver", name, None, opts)
        repository = status_repository(settings.environment)
        token = scoped_token(f"{name}-registry", f"fleet-receiver-{settings.environment}",
                             resource_group=resource_group, registry=registry,
                             actions=scope_actions([repository], [repository]),
                             description=f"fleet.receive of {settings.environment}: the status store only",
                             parent=self)
        provider = k8s.Provider(f"{name}-k8s", kubeconfig=pulumi.Output.secret(kubeconfig),
                                enable_server_side_apply=True, opts=pulumi.ResourceOptions(parent=self))
        self._on_aks = pulumi.ResourceOptions(parent=self, provider=provider)
        labels = {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": settings.environment,
                  "app.kubernetes.io/part-of": "mlops-edge-kit"}
        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata={"name": NAMESPACE, "labels": {
            **labels, "pod-security.kubernetes.io/enforce": "restricted"}}, opts=self._on_aks)
        meta = {"namespace": namespace.metadata["name"], "labels": labels}
        tls, env = self._secrets(name, settings, meta, token)
        account = k8s.core.v1.ServiceAccount(f"{name}-account", metadata={**meta, "name": APP},
                                             automount_service_account_token=False, opts=self._on_aks)
        image = registry.login_server.apply(lambda server: f"{server}/{settings.image.repository}@{settings.image.digest}")
        k8s.apps.v1.Deployment(f"{name}-deployment", metadata={**meta, "name": APP}, spec={
            "replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {"app.kubernetes.io/name": APP}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": account.metadata["name"], "automountServiceAccountToken": False,
                "nodeSelector": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
                "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container(settings, image, env.metadata["name"])],
                "volumes": [{"name": "tls", "secret": {"secretName": tls.metadata["name"], "defaultMode": 0o440}},
                            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]}}},
            opts=self._on_aks)
        annotations, spec = service_spec(settings, sources, settings.label(name_prefix))
        k8s.core.v1.Service(f"{name}-service", metadata={**meta, "name": APP, "annotations": annotations}, spec=spec,
                            opts=self._on_aks)
        k8s.networking.v1.NetworkPolicy(f"{name}-ingress", metadata={**meta, "name": f"{APP}-sites-only"},
                                        spec=network_policy_spec(settings, sources), opts=self._on_aks)
        self.address = settings.address(location, name_prefix)
        self.register_outputs({"address": self.address})

    def _secrets(self, name: str, settings: Settings, meta: dict, token: dict) -> tuple[k8s.core.v1.Secret, ...]:
        """The TLS Secret (mounted read-only) and the env Secret: master report key and registry token."""
        config = pulumi.Config(CONFIG_NAMESPACE)
        tls = k8s.core.v1.Secret(f"{name}-tls", metadata={**meta, "name": f"{APP}-tls"}, type="kubernetes.io/tls",
                                 string_data={"tls.crt": config.require_secret(settings.cert_secret_key),
                                              "tls.key": config.require_secret(settings.key_secret_key)},
                                 opts=self._on_aks)
        env = k8s.core.v1.Secret(f"{name}-env", metadata={**meta, "name": f"{APP}-env"}, type="Opaque", string_data={
            "FLEET_WEBHOOK_KEY": config.require_secret(settings.master_key_secret_key),
            "FLEET_REGISTRY_USER": pulumi.Output.secret(token["username"]),
            "FLEET_REGISTRY_PASSWORD": pulumi.Output.secret(token["password"])}, opts=self._on_aks)
        return tls, env
