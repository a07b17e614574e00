"""Settings of the self-hosted agents on Kubernetes: the stack config key `mlops-edge-kit:agents`."""
import re
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

# KEDA minor -> the Kubernetes minors it is tested on (keda.sh/docs/<minor>/operate/cluster/, "Kubernetes
# Compatibility"; kedacore/keda-docs content/docs/2.20/operate/cluster.md; checked 2026-12-07: 2.21 says TBD).
KEDA_TESTED_KUBERNETES = {"2.20": ("1.33", "1.35")}
Arch = Literal["amd64", "arm64", "arm"]
AKS_ARCHES = ("amd64", "arm64")
EDGE_ARCHES = ("arm64", "arm")
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
SEMVER = r"^v?[0-9]+\.[0-9]+\.[0-9]+$"
TAINT = re.compile(r"^[A-Za-z0-9./_-]+(=[A-Za-z0-9._-]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$")
MOVING_TAGS = {"latest", "stable", "main", "master", "edge", "nightly"}
ORGANIZATION_URL = re.compile(r"^https://(dev\.azure\.com/[A-Za-z0-9][A-Za-z0-9-]*|[a-z0-9-]+\.visualstudio\.com)/?$")


class Model(BaseModel):
    """camelCase keys in YAML, unknown keys refused, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Resources(Model):
    """Requests and limits of one agent container (Kubernetes quantities)."""

    cpu_request: str = Field("500m", pattern=QUANTITY)
    memory_request: str = Field("1Gi", pattern=QUANTITY)
    cpu_limit: str = Field("2", pattern=QUANTITY)
    memory_limit: str = Field("4Gi", pattern=QUANTITY)


class ArchPool(Model):
    """One architecture's agents: its Azure DevOps pool and how far KEDA may scale it."""

    arch: Arch
    pool_name: str = Field(min_length=1, max_length=256)
    min_replicas: int = Field(0, ge=0, le=100)
    max_replicas: int = Field(4, ge=1, le=100)
    resources: Resources = Resources()
    # Edge sites only: node taints (key=value:Effect or key:Effect) these agents and their BuildKit tolerate;
    # on AKS the tolerations follow the cluster's node pools.
    tolerate: list[str] = []

    @field_validator("tolerate")
    @classmethod
    def _taint_syntax(cls, taints: list[str]) -> list[str]:
        wrong = [t for t in taints if not TAINT.match(t)]
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: a taint is key=value:Effect or key:Effect "
                             f"(NoSchedule, PreferNoSchedule or NoExecute)")
        return taints

    @model_validator(mode="after")
    def _min_not_above_max(self):
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) is greater than maxReplicas ({self.max_replicas})")
        return self


def unique_arches(pools: list[ArchPool], allowed: tuple[str, ...], where: str) -> list[ArchPool]:
    """Refuse an architecture the cluster cannot run, or one listed twice."""
    arches = [pool.arch for pool in pools]
    wrong = sorted({a for a in arches if a not in allowed})
    if wrong:
        raise ValueError(f"{where} runs only {' and '.join(allowed)} agents, not {', '.join(wrong)}")
    twice = sorted({a for a in arches if arches.count(a) > 1})
    if twice:
        raise ValueError(f"architecture {', '.join(twice)} is listed more than once")
    return pools


def shared_pool_names(aks_pools: list[ArchPool], sites: list["EdgeSite"]) -> list[str]:
    """Azure DevOps pool names that more than one (cluster, architecture) would serve."""
    names = [pool.pool_name for pool in aks_pools] + [pool.pool_name for site in sites for pool in site.pools]
    return sorted({name for name in names if names.count(name) > 1})


class EdgeSite(Model):
    """A k3s edge site that runs arm64/armv7 agents, reached with a kubeconfig kept in secret config."""

    name: str = Field(pattern=DNS_LABEL)
    kubeconfig_secret_key: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    install_keda: bool = True
    pools: list[ArchPool] = Field(min_length=1)

    @field_validator("pools")
    @classmethod
    def _edge_arches(cls, pools: list[ArchPool]) -> list[ArchPool]:
        return unique_arches(pools, EDGE_ARCHES, "an edge site")


class ImageSettings(Model):
    """The agent image in the platform's registry (the login server comes from the platform stack)."""

    repository: str = Field("mlops-edge-kit/azp-agent", pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
    tag: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

    @field_validator("tag")
    @classmethod
    def _pinned(cls, tag: str) -> str:
        if tag.lower() in MOVING_TAGS:
            raise ValueError(f"'{tag}' is a moving tag; pin a release such as 4.258.1-1")
        return tag


class AuthSettings(Model):
    """How agents register: a PAT, a service principal secret, or Azure workload identity."""

    mode: Literal["pat", "sp", "workload-identity"] = "pat"
    client_id: UUID | None = None
    tenant_id: UUID | None = None
    # sp mode: the secret config key holding the service principal's client secret.
    client_secret_key: str = Field("azpClientSecret", pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _ids_for_entra(self):
        missing = [key for key, value in (("clientId", self.client_id), ("tenantId", self.tenant_id)) if value is None]
        if self.mode != "pat" and missing:
            raise ValueError(f"mode {self.mode} needs {' and '.join(missing)}")
        return self


class AgentsSettings(Model):
    """Agents on AKS (x86 and arm64) and on edge k3s sites (arm64 and armv7), autoscaled by KEDA."""

    enabled: bool = True
    organization_url: str | None = None
    namespace: str = Field("azp-agents", pattern=DNS_LABEL)
    # BuildKit needs Unconfined seccomp, so it runs in its own namespace and the agents' enforces "restricted".
    buildkit_namespace: str = Field("azp-buildkit", pattern=DNS_LABEL)
    image: ImageSettings | None = None
    # By tag and digest (the digest is what runs; the index digest the tag named when checked, as pinned across
    # public repositories: Docker Hub is out of reach here). Same pin: agents/image/Dockerfile.
    buildkit_image: str = Field(
        "moby/buildkit:v0.33.0-rootless@sha256:80b15f0735e87bab7bf59ec4d695dfb4a7cfb25521cf56dc75d6f256285b63ef",
        pattern=r"^[a-z0-9./-]+:v[0-9.]+-rootless@sha256:[0-9a-f]{64}$",
        json_schema_extra={"source": "https://github.com/moby/buildkit/releases/tag/v0.33.0", "checked": "2026-12-07"})
    # The newest KEDA release (its CRDs are in ../shared/upstream/keda-2.20.2); KEDA_TESTED_KUBERNETES says where
    # it is tested, and the plan warns for a cluster outside that range.
    keda_version: str = Field("2.20.2", pattern=SEMVER, json_schema_extra={
        "source": "https://github.com/kedacore/charts/releases/tag/v2.20.2", "checked": "2026-12-07"})
    install_keda: bool = True
    job_timeout_minutes: int = Field(60, ge=1, le=2880)
    polling_interval_seconds: int = Field(30, ge=5, le=600)
    auth: AuthSettings = AuthSettings()
    pools: list[ArchPool] = [ArchPool(arch="amd64", pool_name="aks-amd64"), ArchPool(arch="arm64", pool_name="aks-arm64")]
    edge_sites: list[EdgeSite] = []

    def secret_config_keys(self) -> list[str]:
        """Secret config keys (without the project prefix) that deploying these agents reads."""
        if not self.enabled:
            return []
        keys = ["azpToken"] + ([self.auth.client_secret_key] if self.auth.mode == "sp" else [])
        return keys + [site.kubeconfig_secret_key for site in self.edge_sites]

    @field_validator("organization_url")
    @classmethod
    def _organization_url(cls, url: str | None) -> str | None:
        if url is not None and not ORGANIZATION_URL.match(url):
            raise ValueError(f"'{url}' is not an Azure DevOps organization URL such as https://dev.azure.com/contoso")
        return url.rstrip("/") if url else url

    @field_validator("pools")
    @classmethod
    def _aks_arches(cls, pools: list[ArchPool]) -> list[ArchPool]:
        if any(pool.tolerate for pool in pools):
            raise ValueError("tolerate is for edge site pools; AKS agents tolerate their node pool's taints")
        return unique_arches(pools, AKS_ARCHES, "AKS")

    @field_validator("edge_sites")
    @classmethod
    def _unique_sites(cls, sites: list[EdgeSite]) -> list[EdgeSite]:
        names = [site.name for site in sites]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"edge site {', '.join(twice)} is listed more than once")
        return sites

    @model_validator(mode="after")
    def _complete_when_enabled(self):
        if not self.enabled:
            return self
        missing = [key for key, value in (("organizationUrl", self.organization_url), ("image", self.image)) if value is None]
        if missing:
            raise ValueError(f"agents are enabled but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set")
        shared = shared_pool_names(self.pools, self.edge_sites)
        if shared:
            raise ValueError(f"pool {', '.join(shared)} is served by more than one cluster or architecture; "
                             f"give each its own Azure DevOps pool so that one queued job starts one agent")
        if self.buildkit_namespace == self.namespace:
            raise ValueError(f"buildkitNamespace must differ from namespace ({self.namespace}): the agents' "
                             f"namespace enforces Pod Security restricted, which BuildKit cannot meet")
        if self.edge_sites and self.auth.mode != "pat":
            raise ValueError(f"edgeSites need auth mode pat: KEDA on k3s cannot use Azure workload identity "
                             f"(auth.mode is {self.auth.mode})")
        return self


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.removeprefix("v").split(".")[:2]
    return int(major), int(minor)


def keda_untested(keda_version: str, clusters: dict[str, str]) -> list[str]:
    """A warning per cluster (name -> Kubernetes version) outside the range KEDA `keda_version` is tested on."""
    minor = ".".join(keda_version.removeprefix("v").split(".")[:2])
    tested = KEDA_TESTED_KUBERNETES.get(minor)
    if tested is None:
        return [f"KEDA {keda_version}: its tested Kubernetes range is not recorded (agents/settings.py "
                f"KEDA_TESTED_KUBERNETES; keda.sh/docs/{minor}/operate/cluster/)"]
    low, high = tested
    return [f"KEDA {keda_version} on {name} (Kubernetes {version}): KEDA {minor} is tested on Kubernetes "
            f"{low}-{high} only (keda.sh/docs/{minor}/operate/cluster/); move to a KEDA release tested there, or "
            f"set installKeda: false where the cluster has one" for name, version in clusters.items()
            if not _minor(low) <= _minor(version) <= _minor(high)]
