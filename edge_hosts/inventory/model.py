"""Site inventory models (edge_hosts/sites/<site>.yaml): pydantic, closed to unknown keys, with each field's
rules; loading and the checks across fields are in load.py."""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from common.address_ranges import address_range


K3S_VERSION = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
METALLB_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# inventory arch -> what `uname -m` reports on such a host
UNAME_ARCH = {"x86_64": "x86_64", "arm64": "aarch64", "armv7": "armv7l"}
# names hosts and tools report (uname -m, dpkg --print-architecture, Go/k3s release names) -> inventory arch
ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "arm64", "aarch64": "arm64", "armv7": "armv7",
                "armv7l": "armv7", "armhf": "armv7", "arm": "armv7"}
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class SshSettings(_Model):
    user: str = "root"
    key_file: Path | None = Field(None, alias="keyFile")
    use_agent: bool = Field(False, alias="useAgent")
    port: int = Field(22, ge=1, le=65535)
    known_hosts: Path = Field(Path("known_hosts"), alias="knownHosts")
    sudo_password_env: str | None = Field(None, alias="sudoPasswordEnv", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    connect_timeout: float = Field(10, alias="connectTimeout", gt=0, le=300)
    retries: int = Field(3, ge=0, le=10, description="extra connection attempts, with exponential backoff")


class HostSsh(_Model):
    """Per-host overrides of the site's ssh block."""
    user: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    key_file: Path | None = Field(None, alias="keyFile")


def _pinned(pattern: re.Pattern, product: str, example: str):
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"'{value}' is not a pinned {product} version like {example}")
        return value
    return AfterValidator(check)


K3sVersion = Annotated[str, _pinned(K3S_VERSION, "k3s", "v1.37.2+k3s1")]
MetallbVersion = Annotated[str, _pinned(METALLB_VERSION, "MetalLB", "v0.16.1")]


def _arch(value):
    """An architecture as hosts report it (aarch64, armv7l, armhf, amd64...) -> the inventory's name."""
    return ARCH_ALIASES.get(value, value) if isinstance(value, str) else value


def _endpoint(value: str) -> str:
    if not HOSTNAME.match(value):  # also matches dotted IPv4 addresses
        raise ValueError(f"'{value}' is not a DNS name or an IPv4 address (no scheme, no port)")
    return value


Arch = Annotated[Literal["x86_64", "arm64", "armv7"], BeforeValidator(_arch)]


class K3sSettings(_Model):
    version: K3sVersion
    server_config: dict = Field(default_factory=dict, alias="serverConfig")
    agent_config: dict = Field(default_factory=dict, alias="agentConfig")
    node_config: dict = Field(default_factory=dict, alias="nodeConfig",
                              description="keys for every node (servers run kubelets too), e.g. kubelet-arg")
    join_timeout: float = Field(60, alias="joinTimeout", gt=0, le=900,
                                description="seconds a (re)started node may take to be ready before the kit "
                                            "reads its log and names the cause")
    install_script_sha256: str | None = Field(None, alias="installScriptSha256", pattern=SHA256.pattern)


class MetallbSettings(_Model):
    version: MetallbVersion
    addresses: list[str] = Field(min_length=1)
    manifest_sha256: str | None = Field(None, alias="manifestSha256", pattern=SHA256.pattern)
    speaker_on_tainted_nodes: bool = Field(False, alias="speakerOnTaintedNodes",
                                           description="the speaker tolerates the site's node taints, so every "
                                                       "node can announce LoadBalancer addresses")

    @field_validator("addresses")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        for item in value:
            address_range(item)
        return value


class PreflightSettings(_Model):
    max_clock_skew: float = Field(1.0, alias="maxClockSkew", gt=0, le=86400,
                                  description="seconds a host's clock may be off this machine's (etcd warns at 1 s "
                                              "between peers: rafthttp probing_status.go)")


class BackupSettings(_Model):
    """Where edge.backup keeps the site's backups on the operator's machine (default: the kit's site state
    directory), and how many it keeps."""
    dir: Path | None = None
    keep: int = Field(7, ge=1, le=1000)


class Downloads(_Model):
    """Where online hosts and edge.bundle fetch releases from."""
    mirror: str = "https://github.com"
    raw: str = "https://raw.githubusercontent.com"


REGISTRY_NAME = re.compile(r"^(\*|[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?)$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _registry_name(value: str) -> str:
    if not REGISTRY_NAME.match(value):
        raise ValueError(f"'{value}' is not a registry host[:port] or \"*\"")
    return value


RegistryName = Annotated[str, AfterValidator(_registry_name)]


class Mirror(_Model):
    """A registries.yaml mirror: endpoints tried before the registry itself (docs.k3s.io/installation/private-registry)."""
    endpoints: list[Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]] = Field(default_factory=list)
    rewrite: dict[str, str] = Field(default_factory=dict)


class RegistryCredentialSource(_Model):
    """Where the site's registry token comes from, exactly one source: never the inventory itself."""
    pulumi_stack: str | None = Field(None, alias="pulumiStack", pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$",
                                     description="org/project/env whose edgeRegistryCredentials output holds the site")
    env: str | None = Field(None, pattern=ENV_NAME.pattern, description="a variable holding the site's entry as JSON")
    file: Path | None = Field(None, description="a 0600 file holding the site's entry as JSON")
    site: str | None = Field(None, description="the site's key in edgeRegistryCredentials (default: site)")

    @model_validator(mode="after")
    def _one_source(self) -> "RegistryCredentialSource":
        given = [name for name, value in (("pulumiStack", self.pulumi_stack), ("env", self.env), ("file", self.file))
                 if value is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of pulumiStack, env or file (got {', '.join(given) or 'none'})")
        if self.site is not None and self.pulumi_stack is None:
            raise ValueError("site picks the entry of pulumiStack's output; env and file hold the site's entry itself")
        return self


class RegistryTls(_Model):
    """containerd's TLS settings for the env's registry; paths are on the hosts."""
    ca_file: str | None = Field(None, alias="caFile", pattern=r"^/")
    cert_file: str | None = Field(None, alias="certFile", pattern=r"^/")
    key_file: str | None = Field(None, alias="keyFile", pattern=r"^/")
    insecure_skip_verify: bool = Field(False, alias="insecureSkipVerify")


class Registries(_Model):
    """/etc/rancher/k3s/registries.yaml on every host, and k3s's embedded (peer-to-peer) registry mirror."""
    embedded_mirror: bool = Field(False, alias="embeddedMirror",
                                  description="servers run embedded-registry: nodes share the mirrored registries' "
                                              "images over the site LAN (TCP 5001 and 6443 between nodes)")
    mirrors: dict[RegistryName, Annotated[Mirror, BeforeValidator(lambda v: {} if v is None else v)]] = Field(
        default_factory=dict)
    credentials: RegistryCredentialSource | None = None
    tls: RegistryTls | None = None

    @model_validator(mode="after")
    def _env_registry(self) -> "Registries":
        if self.tls is not None and self.credentials is None:
            raise ValueError("tls applies to the env's registry, which registries.credentials names: set it too")
        if self.embedded_mirror and not (self.mirrors or self.credentials):
            raise ValueError("embeddedMirror shares the registries listed in mirrors (and the env's registry): "
                             "list at least one, or set credentials")
        return self


class Proxy(_Model):
    """HTTP(S) proxy for k3s, containerd and the hosts' own downloads; noProxy gets the site's own ranges added."""
    http: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    https: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    no_proxy: list[Annotated[str, Field(pattern=r"^[^\s,]+$")]] = Field(default_factory=list, alias="noProxy")

    @model_validator(mode="after")
    def _some_proxy(self) -> "Proxy":
        if self.http is None and self.https is None:
            raise ValueError("give http, https or both")
        return self


class FleetDelivery(_Model):
    """Fleet delivery by Flux (README "Fleet delivery"): the bootstrap installs the Flux Operator and the site's
    Flux objects on the first server; the registry token is the site's (registries.credentials)."""
    env: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$", description="the fleet.yaml environment")
    rendered: Path = Field(description="fleet.render's folder of this site, out/fleet/<env>/<fleet site> (flux.yaml)")
    notify_token_env: str | None = Field(None, alias="notifyTokenEnv", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                         description="variable holding the notification token (azuredevops: a PAT "
                                                     "with Code status write; generic-hmac: the env's master "
                                                     "report key, the site's own key is derived from it)")
    notify_address: str | None = Field(None, alias="notifyAddress", pattern=r"^https?://\S+$",
                                       description="generic types: the URL the site's events go to (fleet.receive)")


class Host(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
    address: ipaddress.IPv4Address
    role: Literal["server", "agent"]
    arch: Arch
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[str] = Field(default_factory=list)
    ssh: HostSsh = Field(default_factory=HostSsh)

    @property
    def uname_arch(self) -> str:
        return UNAME_ARCH[self.arch]


class Inventory(_Model):
    site: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    ssh: SshSettings = Field(default_factory=SshSettings)
    k3s: K3sSettings
    metallb: MetallbSettings
    node_subnet: ipaddress.IPv4Network = Field(alias="nodeSubnet")
    api_endpoint: Annotated[str, AfterValidator(_endpoint)] | None = Field(
        None, alias="apiEndpoint", description="DNS name or VIP of the API servers: joins, kubeconfig, tls-san")
    bundle: Path | None = None
    downloads: Downloads = Field(default_factory=Downloads)
    backups: BackupSettings = Field(default_factory=BackupSettings)
    preflight: PreflightSettings = Field(default_factory=PreflightSettings)
    registries: Registries | None = None
    proxy: Proxy | None = None
    fleet: FleetDelivery | None = None
    hosts: list[Host] = Field(min_length=1)
    source: Path = Field(Path("."), exclude=True)

    @property
    def servers(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "server"]

    @property
    def agents(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "agent"]

    @property
    def first_server(self) -> Host:
        return self.servers[0]

    @property
    def api_host(self) -> str:
        """Where nodes and clients reach the API servers: apiEndpoint, else the first server's address."""
        return self.api_endpoint or str(self.first_server.address)

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def ssh_for(self, host: Host) -> SshSettings:
        """The site's ssh settings with the host's overrides applied."""
        overrides = host.ssh.model_dump(exclude_none=True)
        return self.ssh.model_copy(update=overrides)
