"""Per-environment stack settings: one typed, validated object loaded from Pulumi.<env>.yaml."""
import re
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from agents.settings import AgentsSettings
from infra.devops.settings import DevOpsSettings

ARM64_VM_SIZE = re.compile(r"^Standard_[A-Z]+\d+[a-z]*p[a-z]*_v\d+$")
VM_SIZE = re.compile(r"^Standard_[A-Za-z0-9_]+$")
REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


class Model(BaseModel):
    """Settings models: camelCase keys in YAML, unknown keys refused, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Tags(Model):
    owner: str = Field(min_length=1)
    cost_center: str = Field(alias="cost-center", min_length=1)


class Subnets(Model):
    aks_nodes: IPv4Network
    private_endpoints: IPv4Network


class PeeredNetwork(Model):
    """A VNET in the stack's subscription peered with this one both ways: an ephemeral stack's base env, where the
    agent running `up` is (it reaches the private API server through the peering)."""

    resource_group: str = Field(pattern=r"^[-\w._()]{1,90}$")
    vnet: str = Field(pattern=r"^[A-Za-z0-9][-\w.]{0,62}[\w]$")
    address_space: IPv4Network


class NetworkSettings(Model):
    address_space: IPv4Network
    subnets: Subnets
    service_cidr: IPv4Network
    dns_service_ip: IPv4Address
    pod_cidr: IPv4Network
    private_networking: bool = True
    peerings: list[PeeredNetwork] = []

    @model_validator(mode="after")
    def _peers_do_not_overlap(self):
        for peer in self.peerings:
            if peer.address_space.overlaps(self.address_space):
                raise ValueError(f"peering {peer.vnet}: its address space {peer.address_space} overlaps addressSpace "
                                 f"{self.address_space} (Azure peers only VNETs whose spaces do not overlap)")
        return self


class NodePool(Model):
    vm_size: str = Field(pattern=VM_SIZE.pattern)
    min_count: int = Field(ge=0, le=1000)
    max_count: int = Field(ge=1, le=1000)
    zones: list[Literal["1", "2", "3"]] = []

    @model_validator(mode="after")
    def _min_not_above_max(self):
        if self.min_count > self.max_count:
            raise ValueError(f"minCount ({self.min_count}) is greater than maxCount ({self.max_count})")
        return self


class SystemPool(NodePool):
    min_count: int = Field(ge=1, le=1000)


class UserPool(NodePool):
    name: str
    labels: dict[str, str] = {}
    taints: list[str] = []


class X86Pool(UserPool):
    @field_validator("vm_size")
    @classmethod
    def _not_arm(cls, size: str) -> str:
        if ARM64_VM_SIZE.match(size):
            raise ValueError(f"{size} is an Arm64 VM size; the x86 pool needs an x86_64 size such as Standard_D4ds_v5")
        return size


class Arm64Pool(UserPool):
    @field_validator("vm_size")
    @classmethod
    def _arm(cls, size: str) -> str:
        if not ARM64_VM_SIZE.match(size):
            raise ValueError(f"{size} is not an Arm64 VM size; use an Ampere/Cobalt size such as Standard_D4pds_v5")
        return size


class Kubelogin(Model):
    """How the stack's kubeconfig signs in unattended; `clientId`: the service principal (spn, required) or the
    managed/workload identity (msi, workloadidentity: optional) to sign in as."""

    method: Literal["azurecli", "workloadidentity", "azurepipelines", "spn", "msi"] = "azurecli"
    client_id: UUID | None = None

    @model_validator(mode="after")
    def _client_id_fits(self):
        if self.method == "spn" and self.client_id is None:
            raise ValueError("method spn needs clientId (the service principal's application id)")
        if self.method in ("azurecli", "azurepipelines") and self.client_id is not None:
            raise ValueError(f"method {self.method} takes no clientId (it signs in as the "
                             f"{'Azure CLI login' if self.method == 'azurecli' else 'pipeline service connection'})")
        return self

    @property
    def client_id_text(self) -> str | None:
        return str(self.client_id) if self.client_id else None


class ClusterSettings(Model):
    kubernetes_version: str = Field(pattern=r"^\d+\.\d+(\.\d+)?$")
    tier: Literal["Free", "Standard", "Premium"] = "Standard"
    authorized_ip_ranges: list[IPv4Network] = []
    admin_group_object_ids: list[UUID] = []
    kubelogin: Kubelogin = Kubelogin()
    # unset: off, unless AzureML attaches the cluster (Microsoft documents that the extension needs them on)
    disable_local_accounts: bool | None = None
    system_pool: SystemPool
    x86_pool: X86Pool
    arm64_pool: Arm64Pool


class Lifecycle(Model):
    protected: bool = False
    ephemeral: bool = False
    expires_at: datetime | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.protected and self.ephemeral:
            raise ValueError("an environment cannot be both protected and ephemeral")
        if self.ephemeral and self.expires_at is None:
            raise ValueError("an ephemeral environment needs expiresAt")
        return self


class InferenceTls(Model):
    """TLS for AzureML inference on AKS: the endpoint's host name, and the Kubernetes Secret (cert.pem/key.pem in
    the azureml namespace) the stack creates from two secret config values holding the PEM certificate and key."""

    ssl_cname: str = Field(pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
    ssl_secret: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    cert_secret_key: str = Field("inferenceTlsCert", pattern=r"^[A-Za-z][A-Za-z0-9]*$")
    key_secret_key: str = Field("inferenceTlsKey", pattern=r"^[A-Za-z][A-Za-z0-9]*$")


class MlSettings(Model):
    """How the ML workspace uses the cluster: attached as a compute target; inference only over TLS."""

    attach_aks: bool = True
    inference_tls: InferenceTls | None = None
    image_build_vm_size: str = Field("Standard_D4ds_v5", pattern=VM_SIZE.pattern)  # private workspaces' builder

    def secret_config_keys(self) -> list[str]:
        """Secret config keys (without the project prefix) the attachment reads: the inference TLS PEMs."""
        tls = self.inference_tls if self.attach_aks else None
        return [tls.cert_secret_key, tls.key_secret_key] if tls else []


class EdgeSiteRegistry(Model):
    """An edge site's way to the registry: the addresses its traffic leaves from, the repositories it pulls
    (runs) and pushes (builds); the site gets a token scoped to exactly those."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    egress_ips: list[IPv4Network] = Field(min_length=1)
    pull: list[str] = Field(min_length=1)
    push: list[str] = []

    @field_validator("pull", "push")
    @classmethod
    def _repositories(cls, repositories: list[str]) -> list[str]:
        for repo in repositories:
            if not REPOSITORY.match(repo):
                raise ValueError(f"{repo!r} is not a repository name (lowercase path segments, no tag)")
        return repositories


class RegistrySettings(Model):
    edge_sites: list[EdgeSiteRegistry] = []


class KitImage(Model):
    """The kit's own image (docs/fleet.md "The receiver on AKS"), in the stack's registry, pinned by digest."""

    repository: str = Field("mlops-edge-kit/kit", pattern=REPOSITORY.pattern)
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")


class FleetReceiver(Model):
    """`fleet.receive` on AKS for one fleet environment, TLS with a certificate from secret config, the sites' reports
    kept in the stack's registry. `exposure`: `public` (a public load balancer narrowed to the sites, under an Azure
    DNS name: sites that reach Azure over the internet) or `internal` (a fixed private IP in the node subnet: sites
    that reach the VNET over a VPN or ExpressRoute)."""

    environment: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$")  # its name in fleet/fleet.yaml
    image: KitImage
    exposure: Literal["internal", "public"] = "internal"
    load_balancer_ip: IPv4Address | None = None  # internal only: in network.subnets.aksNodes
    dns_label: str | None = None  # public only; default <namePrefix>-fleet-<environment>
    port: int = Field(8443, ge=1024, le=65535)
    ca: str = Field(pattern=r"^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\s*$")  # public: the sites trust it
    allow_from: list[IPv4Network] = []  # where the sites' reports come from; default: registry.edgeSites egressIps
    cert_secret_key: str = Field("fleetReceiverCert", pattern=r"^[A-Za-z][A-Za-z0-9]*$")
    key_secret_key: str = Field("fleetReceiverKey", pattern=r"^[A-Za-z][A-Za-z0-9]*$")
    master_key_secret_key: str = Field("fleetWebhookKey", pattern=r"^[A-Za-z][A-Za-z0-9]*$")

    def label(self, name_prefix: str) -> str:
        """The public load balancer's Azure DNS label: `dnsLabel`, else derived from namePrefix and environment."""
        return f"{name_prefix}-fleet-{self.environment}" if self.dns_label is None else self.dns_label

    def address(self, location: str, name_prefix: str) -> str:
        """Where the sites post: the Azure DNS name of the public load balancer (learn.microsoft.com/azure/aks/
        static-ip, "Apply a DNS label to the service": <label>.<location>.cloudapp.azure.com), or the fixed IP."""
        host = (f"{self.label(name_prefix)}.{location}.cloudapp.azure.com" if self.exposure == "public"
                else str(self.load_balancer_ip))
        return f"https://{host}:{self.port}"

    def secret_config_keys(self) -> list[str]:
        """The secret config keys it reads: the TLS certificate and key (PEM) and the master report key."""
        return [self.cert_secret_key, self.key_secret_key, self.master_key_secret_key]


class NameOverrides(Model):
    """Explicit Azure names, e.g. to adopt existing resources; derived names are used otherwise."""

    storage_account: str | None = None
    registry: str | None = None
    key_vault: str | None = None
    cluster: str | None = None
    dns_prefix: str | None = None


class StackSettings(Model):
    location: str = Field(pattern=r"^[a-z][a-z0-9]+$")
    name_prefix: str = Field(pattern=r"^[a-z][a-z0-9]{1,9}$")
    tags: Tags
    network: NetworkSettings
    cluster: ClusterSettings
    lifecycle: Lifecycle = Lifecycle()
    ml: MlSettings = MlSettings()
    registry: RegistrySettings = RegistrySettings()
    names: NameOverrides = NameOverrides()
    agents: AgentsSettings = AgentsSettings(enabled=False)
    devops: DevOpsSettings = DevOpsSettings()
    fleet_receiver: FleetReceiver | None = None

    @property
    def local_accounts_disabled(self) -> bool:
        """Whether the cluster disables local accounts: as set, else unless AzureML attaches it."""
        explicit = self.cluster.disable_local_accounts
        return (not self.ml.attach_aks) if explicit is None else explicit
