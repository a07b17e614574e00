"""Site inventory: pydantic models for edge_hosts/sites/<site>.yaml and loading with every error reported at once."""
from __future__ import annotations

import ipaddress
import os
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from edge_hosts import configkeys, yamlio

SITES_DIR = Path(__file__).parent / "sites"
K3S_VERSION = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
METALLB_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# inventory arch -> what `uname -m` reports on such a host
UNAME_ARCH = {"x86_64": "x86_64", "arm64": "aarch64", "armv7": "armv7l"}
# names hosts and tools report (uname -m, dpkg --print-architecture, Go/k3s release names) -> inventory arch
ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "arm64", "aarch64": "arm64", "armv7": "armv7",
                "armv7l": "armv7", "armhf": "armv7", "arm": "armv7"}
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


class InventoryError(Exception):
    """A bad inventory file; the message lists every problem found, one per line."""


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
                                                     "with Code status write; generic-hmac: the HMAC key)")
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


def address_range(text: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """First and last address of a MetalLB range 'a-b' or CIDR 'a/n'."""
    try:
        if "-" in text:
            first, last = (ipaddress.IPv4Address(part.strip()) for part in text.split("-", 1))
        else:
            net = ipaddress.IPv4Network(text, strict=True)
            first, last = net[0], net[-1]
    except ValueError as err:
        raise ValueError(f"'{text}' is not an address range 'a-b' or a CIDR: {err}") from None
    if first > last:
        raise ValueError(f"range '{text}' ends before it starts")
    return first, last


def resolve_site(site: str) -> Path:
    """A site name (edge_hosts/sites/<name>.yaml) or a path to an inventory file."""
    if "/" in site or site.endswith((".yaml", ".yml")):
        return Path(site).expanduser()
    return SITES_DIR / f"{site}.yaml"


def load_inventory(site: str) -> Inventory:
    """Load and validate an inventory; raise InventoryError listing every problem with its key path."""
    path = resolve_site(site)
    if path.is_dir():
        raise InventoryError(f"{path}: is a directory; give an inventory file or a site name")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SITES_DIR.glob("*.yaml")))
        raise InventoryError(f"{path}: no such inventory file (sites: {known})")
    try:
        raw = yamlio.load(path.read_text())
    except yaml.YAMLError as err:
        raise InventoryError(f"{path}: not valid YAML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InventoryError(f"{path}: cannot be read: {err}") from None
    if raw is None:
        raw = {}  # an empty file: every required key is reported missing, with its path
    if not isinstance(raw, dict):
        raise InventoryError(f"{path}: expected a mapping at the top level")
    problems = _field_problems(raw) + _site_problems(raw)
    if problems:
        raise InventoryError("\n".join(f"{path}: {where}: {what}" for where, what in problems))
    inventory = Inventory.model_validate(raw)
    return _resolved(inventory, path)


def key_file_problems(inventory: Inventory) -> list[str]:
    """Private key files that are missing or unreadable, each with its key path: found before any connection."""
    problems = []
    for where, key_file, host in [("ssh.keyFile", inventory.ssh.key_file, None),
                                  *((f"hosts[{i}].ssh.keyFile", h.ssh.key_file, h)
                                    for i, h in enumerate(inventory.hosts))]:
        settings = inventory.ssh if host is None else inventory.ssh_for(host)
        if key_file is None or settings.use_agent:
            continue
        if not key_file.is_file() or not os.access(key_file, os.R_OK):
            problems.append(f"{inventory.source}: {where}: {key_file} is not a readable private key file")
    return problems


def _location(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _errors(model: type[BaseModel], data, prefix: tuple = ()) -> list[tuple[str, str]]:
    try:
        model.model_validate(data)
    except ValidationError as err:
        return [(_location(prefix + tuple(e["loc"])), e["msg"]) for e in err.errors()]
    return []


def _field_problems(raw: dict) -> list[tuple[str, str]]:
    return _errors(Inventory, raw)


def _parsed_hosts(raw: dict) -> list[tuple[int, Host]]:
    hosts = raw.get("hosts") if isinstance(raw.get("hosts"), list) else []
    parsed = []
    for index, item in enumerate(hosts):
        if not _errors(Host, item):
            parsed.append((index, Host.model_validate(item)))
    return parsed


def _site_problems(raw: dict) -> list[tuple[str, str]]:
    """Checks across fields, run on every part that parses so all problems show at once."""
    hosts = _parsed_hosts(raw)
    problems = _duplicates(hosts, "name") + _duplicates(hosts, "address")
    servers = sum(1 for _, h in hosts if h.role == "server")
    if hosts and servers % 2 == 0:
        problems.append(("hosts", f"{servers} servers: a site needs an odd number of servers (1, 3, 5...) for quorum"))
    problems += _subnet_problems(raw, hosts)
    if isinstance(raw.get("k3s"), dict):
        problems += configkeys.problems(raw["k3s"])
    if raw.get("bundle") is None:
        problems += _online_pin_problems(raw)
    return problems


def _duplicates(hosts: list[tuple[int, Host]], field: str) -> list[tuple[str, str]]:
    counts = Counter(getattr(h, field) for _, h in hosts)
    return [(f"hosts[{i}].{field}", f"duplicate {field} '{getattr(h, field)}'")
            for i, h in hosts if counts[getattr(h, field)] > 1]


def _subnet_problems(raw: dict, hosts: list[tuple[int, Host]]) -> list[tuple[str, str]]:
    try:
        subnet = ipaddress.IPv4Network(str(raw.get("nodeSubnet")), strict=False)
        ranges = [address_range(str(r)) for r in (raw.get("metallb") or {}).get("addresses") or []]
    except ValueError:
        return []  # already reported as a field problem
    problems = [(f"hosts[{i}].address", f"{h.address} is outside nodeSubnet {subnet}")
                for i, h in hosts if h.address not in subnet]
    for index, (first, last) in enumerate(ranges):
        where = f"metallb.addresses[{index}]"
        if first not in subnet or last not in subnet:
            problems.append((where, f"range {first}-{last} is outside nodeSubnet {subnet}"))
        problems += [(where, f"range {first}-{last} overlaps host {h.name} ({h.address})")
                     for _, h in hosts if first <= h.address <= last]
    return problems


def _online_pin_problems(raw: dict) -> list[tuple[str, str]]:
    """Without a bundle hosts download for themselves: the unchecksummed files need pinned sha256 values."""
    problems = []
    if isinstance(raw.get("k3s"), dict) and not raw["k3s"].get("installScriptSha256"):
        problems.append(("k3s.installScriptSha256", "required when no bundle is given (hosts download install.sh)"))
    if isinstance(raw.get("metallb"), dict) and not raw["metallb"].get("manifestSha256"):
        problems.append(("metallb.manifestSha256", "required when no bundle is given (hosts download the manifest)"))
    return problems


def _resolved(inventory: Inventory, path: Path) -> Inventory:
    """Resolve relative paths against the inventory file's directory."""
    base = path.resolve().parent

    def rel(p: Path | None) -> Path | None:
        return None if p is None else (base / p.expanduser()).resolve()

    ssh = inventory.ssh.model_copy(update={"key_file": rel(inventory.ssh.key_file),
                                           "known_hosts": rel(inventory.ssh.known_hosts)})
    hosts = [h.model_copy(update={"ssh": h.ssh.model_copy(update={"key_file": rel(h.ssh.key_file)})})
             for h in inventory.hosts]
    registries = inventory.registries
    if registries and registries.credentials and registries.credentials.file:
        registries = registries.model_copy(update={"credentials": registries.credentials.model_copy(
            update={"file": rel(registries.credentials.file)})})
    backups = inventory.backups.model_copy(update={"dir": rel(inventory.backups.dir)})
    return inventory.model_copy(update={"ssh": ssh, "hosts": hosts, "bundle": rel(inventory.bundle),
                                        "backups": backups, "registries": registries, "source": path.resolve()})
