"""Building the multi-arch agent image with `docker buildx`, and pinning the agent release.

`agent.lock` (next to the Dockerfile) holds the agent version and the SHA-256 of each
package as published in the release notes; the Dockerfile verifies them at build time.
"""
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

from pydantic import BaseModel, field_validator

IMAGE_DIR = Path(__file__).resolve().parent / "image"
LOCK_FILE = IMAGE_DIR / "agent.lock"
REPOSITORY = "mlops-edge-kit/azp-agent"
RELEASES_API = "https://api.github.com/repos/microsoft/azure-pipelines-agent/releases/tags"
# docker platform -> (agent package name, lock key)
PLATFORMS = {
    "linux/amd64": ("linux-x64", "AGENT_SHA256_LINUX_AMD64"),
    "linux/arm64": ("linux-arm64", "AGENT_SHA256_LINUX_ARM64"),
    "linux/arm/v7": ("linux-arm", "AGENT_SHA256_LINUX_ARM_V7"),
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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


def build_args_from_lock(lock: dict[str, str], platforms: list[str]) -> dict[str, str]:
    """The Dockerfile build arguments; BuildError naming each platform without a checksum."""
    missing = [p for p in platforms if not _SHA256.match(lock.get(PLATFORMS[p][1], ""))]
    if not lock.get("AGENT_VERSION") or missing:
        raise BuildError(f"{LOCK_FILE} lacks the agent version or the SHA-256 for "
                         f"{', '.join(missing) or 'AGENT_VERSION'}: run ./kit agents.lock-agent "
                         f"--version {lock.get('AGENT_VERSION') or '<x.y.z>'}")
    return {"AGENT_VERSION": lock["AGENT_VERSION"],
            **{PLATFORMS[p][1]: lock[PLATFORMS[p][1]] for p in platforms}}


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
    for probe, problem in ((["docker", "buildx", "version"], "the docker buildx plugin is missing"),
                           (["docker", "buildx", "inspect"], "no buildx builder is reachable "
                                                             "(is the Docker daemon running?)")):
        result = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            raise BuildError(f"{problem}: {detail[0]}")


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


def write_lock(version: str, sums: dict[str, str], path: Path = LOCK_FILE) -> None:
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    lines = header + [f"AGENT_VERSION={version}"] + [f"{key}={sums[key]}" for _, key in PLATFORMS.values()]
    path.write_text("\n".join(lines) + "\n")
