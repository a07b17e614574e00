"""The fleet's seeds: fleet.yaml (application, model, environments), bases/, rings/<ring>.yaml and
sites/<site>/site.yaml. Loading reports every problem at once, each with its file and key path."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from common import yamlio
from common.address_ranges import address_range, overlapping
from common.suggest import did_you_mean, unknown_key
from fleet import cron
from infra.stack.stack_config import ROOT as PROJECT_DIR  # the checkout holding the Pulumi.<stack>.yaml files

DEFAULT_ROOT = Path(__file__).parent
NAME = r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$"  # a DNS label: also a registry path component
DIGEST_REF = r"^[a-z0-9.:-]+(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}$"
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")  # the ResourceSetInputProvider window pattern
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
AZURE_REGISTRY_DOMAIN = ".azurecr.io"


class FleetError(Exception):
    """Bad seeds: the message lists every problem, one per line."""


def duration_s(text: str) -> float:
    """Seconds of a Go duration string ("1h30m")."""
    return sum(float(n) * _UNIT_S[u] for n, _, u in re.findall(r"([0-9]+(\.[0-9]+)?)(ms|s|m|h)", text))


def _duration(text: str) -> str:
    if not GO_DURATION.match(text):
        raise ValueError("must be a duration such as 90m, 3h or 1h30m")
    return text


def _cron(text: str) -> str:
    cron.parse(text)  # CronError is a ValueError: reported with the file and key path
    return text


def _zone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{text}' (an IANA name such as Europe/Berlin)") from None
    if problem := cron.zone_problem(text):
        raise ValueError(problem)
    return text


def _window(text: str) -> str:
    _duration(text)
    if duration_s(text) < 240:  # Flux Operator: zero or at least twice the 2m reconcile timeout
        raise ValueError("a window must last at least 4m (twice the Flux Operator's 2m timeout)")
    return text


Duration = Annotated[str, AfterValidator(_duration)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Window(Strict):
    cron: Annotated[str, AfterValidator(_cron)]
    time_zone: Annotated[str, AfterValidator(_zone)] = Field("UTC", alias="timeZone")
    duration: Annotated[str, AfterValidator(_window)]


class Application(Strict):
    name: Annotated[str, Field(pattern=NAME)]
    image: Annotated[str, Field(pattern=DIGEST_REF, description="by digest")]
    port: Annotated[int, Field(ge=1, le=65535)] = 8080


class Model(Strict):
    name: Annotated[str, Field(pattern=NAME)]
    version: Annotated[str, Field(pattern=r"^[0-9A-Za-z._-]{1,64}$")]


class Receiver(Strict):
    """Where the sites' reports go (fleet.receive) and how they are checked (docs/fleet.md "Status back"); address
    and ca unset: the env's stack deploys the receiver and gives them (Pulumi.<stack>.yaml fleetReceiver)."""
    address: Annotated[str, Field(pattern=r"^https://[a-z0-9.-]+(:[0-9]{1,5})?$|^http://127\.0\.0\.1:[0-9]{1,5}$",
                                  description="https://host[:port]; http only on 127.0.0.1 (a test)")] | None = None
    key_generation: Annotated[int, Field(ge=1, alias="keyGeneration")] = 1  # bump to rotate every site's key
    ca: Annotated[str, Field(pattern=r"^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\s*$")] | None = None


class Environment(Strict):
    stack: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")] | None = None  # the stack creating its registry
    registry: Annotated[str, Field(pattern=r"^[a-z0-9.-]+(:[0-9]{1,5})?$")] | None = None  # one no stack creates
    insecure: bool = False  # plain HTTP to the registry: only for a loopback test registry
    notify_type: Literal["azuredevops", "generic", "generic-hmac"] = Field(alias="notifyType")
    notify_address: str = Field("", alias="notifyAddress", pattern=r"^$|^https://dev\.azure\.com/[^/]+/[^/]+/_git/[^/]+$")
    source: Annotated[str, Field(pattern=r"^https://")]  # the Git repository of these seeds (artifact source)
    receiver: Receiver | None = None  # generic-hmac: the kit's receiver

    @model_validator(mode="after")
    def _registry(self):
        if (self.stack is None) == (self.registry is None):
            raise ValueError("give stack (the Pulumi stack whose registry this environment uses) or registry (one "
                             "no stack of this project creates), exactly one")
        if self.registry and self.registry.split(":")[0].endswith(AZURE_REGISTRY_DOMAIN):
            raise ValueError(f"registry: {self.registry} is an Azure registry: name the stack that creates it "
                             "(stack: <env>), so the fleet uses that stack's registryLoginServer")
        if self.insecure and self.stack:
            raise ValueError("insecure (plain HTTP) is only for a registry given by address, never a stack's")
        return self

    @model_validator(mode="after")
    def _address(self):
        if self.notify_type == "azuredevops" and not self.notify_address:
            raise ValueError("notifyType azuredevops needs notifyAddress (https://dev.azure.com/<org>/<project>/_git/<repo>)")
        if (self.notify_type == "generic-hmac") != (self.receiver is not None):
            raise ValueError("receiver: give it exactly when notifyType is generic-hmac (each site reports to the "
                             "kit's receiver with its own key)")
        if self.receiver and self.registry and not self.receiver.address:
            raise ValueError("receiver.address: required for a registry given by address (no stack deploys its "
                             "receiver)")
        return self


class FleetFile(Strict):
    application: Application
    model: Model
    environments: dict[Annotated[str, Field(pattern=NAME)], Environment]


class Patch(Strict):
    kind: str
    name: str
    merge: dict


def _one_range(text: str) -> str:
    address_range(text)
    return text


class Ring(Strict):
    patches: list[Patch] = []


class Metallb(Strict):
    """The site's pool: each entry as MetalLB's webhook would accept it, and no two overlapping."""
    addresses: Annotated[list[Annotated[str, AfterValidator(_one_range)]], Field(min_length=1)]

    @model_validator(mode="after")
    def _no_overlap(self):
        ranges = [address_range(a) for a in self.addresses]
        clashes = [f"addresses[{i}] '{self.addresses[i]}' overlaps addresses[{j}] '{self.addresses[j]}'"
                   for i, j in overlapping(ranges)]
        if clashes:
            raise ValueError("; ".join(clashes) + " (MetalLB refuses a pool whose ranges overlap)")
        return self


class SiteFile(Strict):
    env: str
    ring: Annotated[str, Field(pattern=NAME)]
    labels: dict[str, str] = {}
    model_version: str | None = Field(None, alias="modelVersion", pattern=r"^[0-9A-Za-z._-]{1,64}$")
    metallb: Metallb
    windows: list[Window] = []
    patches: list[Patch] = []
    link_mbps: Annotated[float, Field(gt=0)] | None = Field(None, alias="linkMbps")  # the site's download rate


@dataclass(frozen=True)
class EnvView:
    """One environment with its name (what the Flux builders read)."""
    name: str
    registry: str
    insecure: bool
    notify_type: str
    notify_address: str
    source: str
    receiver: Receiver | None = None


@dataclass(frozen=True)
class Site:
    name: str
    env: EnvView
    ring: str
    labels: dict[str, str]
    model: Model
    metallb: Metallb
    windows: tuple[Window, ...]
    patches: tuple[Patch, ...]
    ring_patches: tuple[Patch, ...]
    link_mbps: float | None = None


@dataclass(frozen=True)
class Fleet:
    root: Path
    application: Application
    model: Model
    environments: dict[str, EnvView]
    bases: tuple[dict, ...]
    sites: tuple[Site, ...]

    def of(self, env: str) -> list[Site]:
        return [s for s in self.sites if s.env.name == env]

    def check_env(self, env: str) -> None:
        """FleetError when fleet.yaml has no environment `env`, naming the closest one."""
        if env not in self.environments:
            raise FleetError(f"fleet.yaml: environments: no '{env}'{did_you_mean(env, self.environments)} "
                             f"({', '.join(self.environments)})")


def _where(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def problems_of(err: ValidationError, model: type[BaseModel], shown) -> list[str]:
    """One line per error: the file, the key path and what is wrong; an unknown key with the closest known one."""
    return [f"{shown}: {_where(tuple(e['loc']))}: {e['msg']}"
            + (unknown_key(model, tuple(e["loc"])) if e["type"] == "extra_forbidden" else "") for e in err.errors()]


def _parse(model: type[BaseModel], path: Path, root: Path, problems: list[str]):
    """The file's model, or None with its problems appended."""
    shown = path.relative_to(root.parent) if path.is_relative_to(root.parent) else path
    try:
        raw = yamlio.load(path.read_text(), str(shown))
    except (OSError, yaml.YAMLError) as err:
        problems.append(f"{shown}: cannot read: {err}")
        return None
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as err:
        problems += problems_of(err, model, shown)
        return None


def _bases(root: Path, problems: list[str]) -> tuple[dict, ...]:
    objects = []
    for path in sorted((root / "bases").glob("*.yaml")):
        try:
            docs = [d for d in yamlio.load_all(path.read_text(), str(path)) if d is not None]
        except yaml.YAMLError as err:
            problems.append(f"{path}: cannot read: {err}")
            continue
        for i, doc in enumerate(docs):
            if not (isinstance(doc, dict) and doc.get("kind") and (doc.get("metadata") or {}).get("name")):
                problems.append(f"{path}: document {i}: needs kind and metadata.name")
            else:
                objects.append(doc)
    return tuple(objects)


def _from_stack(name: str, env: Environment, project_dir: Path, problems: list[str]) -> tuple[str, Receiver | None]:
    """The env's registry and receiver: as it gives them, or from its stack, never a second literal that could
    disagree. The registry is the stack's `registryLoginServer` as `./kit plan --env <stack>` computes it from
    Pulumi.<stack>.yaml (the registry's name, `names.registry` or derived from `namePrefix` and the stack as the
    program names it on a self-managed backend; Azure's login server for it, `<name in lowercase>.azurecr.io`:
    tests/kit/test_fleet_registries.py holds it equal to the plan's output); a receiver without an address is the
    one the stack deploys (its `fleetReceiver`: the output fleetReceiverAddress, and its CA)."""
    from infra.lifecycle.stack_files import validated_stack
    from infra.stack.stack_config import SettingsError, available_envs, stack_file

    if env.registry:
        return env.registry, env.receiver
    where, path = f"fleet.yaml: environments.{name}.stack: '{env.stack}'", stack_file(env.stack, project_dir)
    if not path.is_file():
        problems.append(f"{where}: no {path} (stacks: {', '.join(available_envs(project_dir)) or 'none'})")
        return "", env.receiver
    try:
        stack = validated_stack(project_dir, env.stack)
    except SettingsError as err:
        problems.append(f"{where}: the stack file is not valid:\n  " + "\n  ".join(err.problems))
        return "", env.receiver
    return f"{stack.names.registry.lower()}{AZURE_REGISTRY_DOMAIN}", _receiver(name, env, stack, problems)


def _receiver(name: str, env: Environment, stack, problems: list[str]) -> Receiver | None:
    """The receiver as the seeds give it, or with the address and CA of the one the env's stack deploys."""
    receiver, deployed = env.receiver, stack.settings.fleet_receiver
    where = f"fleet.yaml: environments.{name}.receiver"
    address = deployed.address(stack.settings.location, stack.settings.name_prefix) if deployed else None
    if receiver is None:
        return None
    if receiver.address:
        if deployed is not None and deployed.environment == name:
            problems.append(f"{where}.address: Pulumi.{env.stack}.yaml deploys this environment's receiver at "
                            f"{address}: remove address and ca (they come from the stack)")
        return receiver
    if deployed is None or deployed.environment != name:
        problems.append(f"{where}: no address, and Pulumi.{env.stack}.yaml deploys no receiver for '{name}' (give "
                        f"address and ca, or set fleetReceiver.environment: {name} in the stack file)")
        return receiver
    if receiver.ca:
        problems.append(f"{where}.ca: the CA comes from Pulumi.{env.stack}.yaml fleetReceiver.ca: remove it here")
    return receiver.model_copy(update={"address": address, "ca": deployed.ca})


def load_fleet(root: Path = DEFAULT_ROOT, project_dir: Path = PROJECT_DIR) -> Fleet:
    """Every seed under root, registries from the stacks in project_dir; FleetError lists all problems."""
    problems: list[str] = []
    fleet_file = _parse(FleetFile, root / "fleet.yaml", root, problems)
    bases = _bases(root, problems)
    rings = {p.stem: _parse(Ring, p, root, problems) for p in sorted((root / "rings").glob("*.yaml"))}
    envs = {}
    for name, e in (fleet_file.environments.items() if fleet_file else ()):
        registry, receiver = _from_stack(name, e, project_dir, problems)
        envs[name] = EnvView(name, registry, e.insecure, e.notify_type, e.notify_address, e.source, receiver)
    sites = []
    for path in sorted((root / "sites").glob("*/site.yaml")):
        name, site = path.parent.name, _parse(SiteFile, path, root, problems)
        if not re.match(NAME, name):
            problems.append(f"{path}: the folder name '{name}' must be a DNS label (lowercase, digits, '-')")
        if site is None or fleet_file is None:
            continue
        if site.env not in envs:
            problems.append(f"{path}: env: '{site.env}' is not in fleet.yaml environments"
                            f"{did_you_mean(site.env, envs)} ({', '.join(envs)})")
            continue
        if site.ring not in rings:
            problems.append(f"{path}: ring: no rings/{site.ring}.yaml{did_you_mean(site.ring, rings)} "
                            f"({', '.join(rings)})")
            continue
        model = Model(name=fleet_file.model.name, version=site.model_version or fleet_file.model.version)
        sites.append(Site(name, envs[site.env], site.ring, site.labels, model, site.metallb, tuple(site.windows),
                          tuple(site.patches), tuple(rings[site.ring].patches if rings[site.ring] else ()),
                          site.link_mbps))
    if problems:
        raise FleetError("\n".join(dict.fromkeys(problems)))
    return Fleet(root, fleet_file.application, fleet_file.model, envs, bases, tuple(sites))
