"""Building the multi-arch agent image with `docker buildx`, and pinning what goes into it.

`agent.lock` (next to the Dockerfile) holds the agent version and the SHA-256 of each package as
published in the release notes, and the version and published SHA-256 per platform of each tool the
kit's pipelines call (Pulumi CLI, kubectl, kubelogin; the Azure CLI comes pinned from Microsoft's signed
apt repository); the Dockerfile verifies every download at build time.
"""
import json
import re
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pydantic import BaseModel, field_validator

IMAGE_DIR = Path(__file__).resolve().parent / "image"
LOCK_FILE = IMAGE_DIR / "agent.lock"
REPOSITORY = "mlops-edge-kit/azp-agent"
RELEASES_API = "https://api.github.com/repos/microsoft/azure-pipelines-agent/releases/tags"
RELEASES_PAGE = "https://github.com/microsoft/azure-pipelines-agent/releases/tag"
# docker platform -> (agent package name, lock key)
PLATFORMS = {
    "linux/amd64": ("linux-x64", "AGENT_SHA256_LINUX_AMD64"),
    "linux/arm64": ("linux-arm64", "AGENT_SHA256_LINUX_ARM64"),
    "linux/arm/v7": ("linux-arm", "AGENT_SHA256_LINUX_ARM_V7"),
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEX64 = re.compile(r"\b([0-9a-fA-F]{64})\b")
SUFFIX = {"linux/amd64": "LINUX_AMD64", "linux/arm64": "LINUX_ARM64", "linux/arm/v7": "LINUX_ARM_V7"}
AZURE_CLI_KEY = "AZURE_CLI_VERSION"


@dataclass(frozen=True)
class Tool:
    """A CLI baked into the image: its lock keys, its download name per platform, where its sums are published."""

    name: str
    packages: dict[str, str]  # docker platform -> the name upstream gives that platform
    checksums: str  # URL template of the published checksums ({version}, {package})
    listing: str = ""  # when that file lists several archives: the name of ours

    @property
    def version_key(self) -> str:
        return f"{self.name.upper()}_VERSION"

    def sum_key(self, platform: str) -> str:
        return f"{self.name.upper()}_SHA256_{SUFFIX[platform]}"


# Download and checksum locations as each project publishes them (the Dockerfile downloads from the same places):
# Pulumi https://get.pulumi.com/releases/sdk/ (listed in github.com/pulumi/docs data/versions.json; no armv7 build),
# kubectl https://dl.k8s.io/release/v<version>/bin/linux/<arch>/kubectl(.sha256) (kubernetes.io/docs/tasks/tools),
# kubelogin https://github.com/Azure/kubelogin/releases (armv7 since v0.0.34, CHANGELOG.md).
TOOLS = (
    Tool("pulumi", {"linux/amd64": "x64", "linux/arm64": "arm64"},
         "https://get.pulumi.com/releases/sdk/pulumi-{version}-checksums.txt",
         "pulumi-v{version}-linux-{package}.tar.gz"),
    Tool("kubectl", {"linux/amd64": "amd64", "linux/arm64": "arm64", "linux/arm/v7": "arm"},
         "https://dl.k8s.io/release/v{version}/bin/linux/{package}/kubectl.sha256"),
    Tool("kubelogin", {"linux/amd64": "amd64", "linux/arm64": "arm64", "linux/arm/v7": "armv7"},
         "https://github.com/Azure/kubelogin/releases/download/v{version}/kubelogin-linux-{package}.zip.sha256"),
)


class BuildError(Exception):
    """The build cannot run here (no docker, no buildx, no builder) or the lock is incomplete."""


class BuildArgs(BaseModel):
    """`agents.build` arguments, validated together."""

    registry: str
    platforms: list[str]
    tag: str

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._-]+)*", value):
            raise ValueError(f"{value!r} is not a registry host such as myacr.azurecr.io")
        return value

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in PLATFORMS]
        if unknown or not value:
            raise ValueError(f"{', '.join(unknown) or 'nothing'} given; choose from {', '.join(PLATFORMS)}")
        return value

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", value) or value == "latest":
            raise ValueError(f"{value!r} is not a pinned image tag (letters, digits, . _ -; not 'latest')")
        return value


def read_lock(path: Path = LOCK_FILE) -> dict[str, str]:
    """KEY=VALUE pairs of agent.lock (comments and blank lines skipped)."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


# Each <PIN>_VERSION's evidence: the release page it was read from and the day (never a build argument).
EVIDENCE_SUFFIXES = ("_SOURCE", "_CHECKED")
_CHECKED = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def pins(lock: dict[str, str]) -> dict[str, str]:
    """The lock without its evidence keys: what the build receives."""
    return {key: value for key, value in lock.items() if not key.endswith(EVIDENCE_SUFFIXES)}


def missing_evidence(lock: dict[str, str]) -> list[str]:
    """Each <PIN>_SOURCE (an https:// page) or <PIN>_CHECKED (YYYY-MM-DD) a pinned version lacks."""
    missing = []
    for pin in (key.removesuffix("_VERSION") for key in lock if key.endswith("_VERSION")):
        if not lock.get(f"{pin}_SOURCE", "").startswith("https://"):
            missing.append(f"{pin}_SOURCE")
        if not _CHECKED.match(lock.get(f"{pin}_CHECKED", "")):
            missing.append(f"{pin}_CHECKED")
    return missing


def require_evidence(lock: dict[str, str]) -> None:
    """BuildError naming each evidence key the lock lacks."""
    if missing_evidence(lock):
        raise BuildError(f"{LOCK_FILE} lacks {', '.join(missing_evidence(lock))}: each pinned version records "
                         "its release page and the day it was checked")


def build_args_from_lock(lock: dict[str, str], platforms: list[str]) -> dict[str, str]:
    """The Dockerfile build arguments; BuildError naming each platform without a checksum."""
    missing = [p for p in platforms if not _SHA256.match(lock.get(PLATFORMS[p][1], ""))]
    if not lock.get("AGENT_VERSION") or missing:
        raise BuildError(f"{LOCK_FILE} lacks the agent version or the SHA-256 for "
                         f"{', '.join(missing) or 'AGENT_VERSION'}: run ./kit agents.lock-agent "
                         f"--version {lock.get('AGENT_VERSION') or '<x.y.z>'}")
    return {"AGENT_VERSION": lock["AGENT_VERSION"],
            **{PLATFORMS[p][1]: lock[PLATFORMS[p][1]] for p in platforms}}


# Commands every image has (apt packages, the BuildKit client); the Azure CLI only where Microsoft builds it.
BASE_TOOLS = ("bash", "curl", "git", "jq", "python3", "buildctl")
AZURE_CLI_PLATFORMS = ("linux/amd64", "linux/arm64")


def image_tools(platform: str) -> set[str]:
    """The commands the agent image for this platform provides to pipeline steps."""
    return {*BASE_TOOLS, *(tool.name for tool in TOOLS if platform in tool.packages),
            *(["az"] if platform in AZURE_CLI_PLATFORMS else [])}


def tool_build_args(lock: dict[str, str], platforms: list[str]) -> dict[str, str]:
    """The tools' build arguments; BuildError naming every version or checksum the lock lacks."""
    missing = [key for key in (AZURE_CLI_KEY, *(tool.version_key for tool in TOOLS)) if not lock.get(key)]
    missing += [tool.sum_key(p) for tool in TOOLS for p in platforms
                if p in tool.packages and not _SHA256.match(lock.get(tool.sum_key(p), ""))]
    if missing:
        raise BuildError(f"{LOCK_FILE} lacks {', '.join(missing)}: set the versions, then run ./kit agents.lock-tools")
    keys = [AZURE_CLI_KEY] + [key for tool in TOOLS for key in
                              (tool.version_key, *(tool.sum_key(p) for p in platforms if p in tool.packages))]
    return {key: lock[key] for key in keys}


def published_tool_checksums(lock: dict[str, str], fetch=None) -> dict[str, str]:
    """SHA-256 per tool and platform for the versions in the lock, read from each project's published sums."""
    fetch, pages, sums = fetch or _read_url, {}, {}
    for tool in TOOLS:
        version = lock.get(tool.version_key, "")
        if not re.fullmatch(r"\d+\.\d+\.\d+", version):
            raise BuildError(f"{LOCK_FILE}: {tool.version_key}={version!r} is not a version like 1.2.3")
        for platform, package in tool.packages.items():
            url = tool.checksums.format(version=version, package=package)
            text = pages[url] if url in pages else pages.setdefault(url, fetch(url))
            if tool.listing:  # one file lists every archive: the line naming ours
                archive = tool.listing.format(version=version, package=package)
                text = next((line for line in text.splitlines() if line.split()[-1:] == [archive]), "")
            found = _HEX64.search(text)
            if not found:
                raise BuildError(f"no SHA-256 for {tool.name} {version} {platform} in {url}")
            sums[tool.sum_key(platform)] = found.group(1).lower()
    return sums


def _read_url(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read().decode()
    except OSError as err:
        raise BuildError(f"cannot read {url}: {err}") from None


def image_ref(args: BuildArgs) -> str:
    return f"{args.registry}/{REPOSITORY}:{args.tag}"


def buildx_command(args: BuildArgs, build_args: dict[str, str], push: bool) -> list[str]:
    """`docker buildx build` for all platforms; without --push the result stays in the cache."""
    command = ["docker", "buildx", "build", "--platform", ",".join(args.platforms),
               "--tag", image_ref(args), "--provenance=true", "--sbom=true"]
    for key, value in build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    command += ["--push"] if push else ["--output", "type=cacheonly"]
    return command + [str(IMAGE_DIR)]


def check_docker() -> None:
    """BuildError with what is missing: the docker CLI, its buildx plugin or a reachable builder."""
    if shutil.which("docker") is None:
        raise BuildError("docker is not installed: agents.build needs the docker CLI with buildx")
    for probe, problem in ((["docker", "buildx", "version"], "the docker buildx plugin is missing: install it "
                                                             "(https://docs.docker.com/go/buildx/) and re-run"),
                           (["docker", "buildx", "inspect"], "no buildx builder is reachable: is the Docker daemon "
                                                             "running, and may this user use it?")):
        result = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:  # docker's own text ("See 'docker --help'") is no help here: the kit says it
            raise BuildError(problem)


def published_checksums(version: str, releases_api: str = RELEASES_API) -> dict[str, str]:
    """SHA-256 per lock key, read from the release notes of agent `version`."""
    request = urllib.request.Request(f"{releases_api}/v{version}",
                                     headers={"Accept": "application/vnd.github+json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response).get("body") or ""
    except OSError as err:
        raise BuildError(f"cannot read the release notes of agent v{version}: {err}") from None
    sums = {}
    for package, key in PLATFORMS.values():
        name = re.escape(f"vsts-agent-{package}-{version}.tar.gz")
        found = re.search(rf"{name}\]\([^)]*\)\s*\|\s*([0-9a-fA-F]{{64}})", body)
        if not found:
            raise BuildError(f"the release notes of v{version} list no SHA-256 for {package}")
        sums[key] = found.group(1).lower()
    return sums


def write_lock(version: str, sums: dict[str, str], path: Path = LOCK_FILE, checked: date | None = None) -> None:
    """Set the agent version, its release page, the day it was read and these checksums in the lock,
    keeping its comments and other keys."""
    update_lock({"AGENT_VERSION": version, "AGENT_SOURCE": f"{RELEASES_PAGE}/v{version}",
                 "AGENT_CHECKED": (checked or date.today()).isoformat(), **sums}, path)


def update_lock(values: dict[str, str], path: Path = LOCK_FILE) -> None:
    """Set these keys in the lock file in place (new keys at the end); comments and order stay."""
    pending, lines = dict(values), []
    for line in path.read_text().splitlines():
        key = line.partition("=")[0].strip()
        if not line.lstrip().startswith("#") and key in pending:
            line = f"{key}={pending.pop(key)}"
        lines.append(line)
    lines += [f"{key}={value}" for key, value in pending.items()]
    path.write_text("\n".join(lines) + "\n")
