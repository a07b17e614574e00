"""A release unit of one environment: the models (by digest) and one Flux artifact per site, pushed to the
env's registry under the release's tag. Sites do not move: a promotion moves their `live` tag.

Without AzureML (offline, a lab), a small sample model stands in for the registered one: per version the env's
sites pin, weights made from the name and version (versions differ by digest), labels and a note saying what it
is; a version folder that holds files (real model files) is never touched."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fleet import artifact, flux
from fleet.artifact import Artifact, Pusher
from fleet.config import EnvView, Fleet, FleetError
from fleet.render import RenderedSite, render_env

PASSWORD_ENV = "FLEET_REGISTRY_PASSWORD"
USER_ENV = "FLEET_REGISTRY_USER"
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")  # the distribution spec's tag grammar
REVISION = re.compile(r"^[^@\s]+@sha1:[0-9a-f]{40}$")      # '<branch|tag>@sha1:<commit>' as Flux expects
PARALLEL = 8


@dataclass(frozen=True)
class Release:
    env: str
    name: str
    revision: str
    models: dict[str, str]  # version -> digest
    sites: dict[str, str]   # site -> digest


def registry_url(env: EnvView) -> str:
    return f"{'http' if env.insecure else 'https'}://{env.registry}"


def credentials() -> tuple[str, str] | None:
    """(user, password) from the environment (never from argv), or None for an anonymous registry."""
    user, password = os.environ.get(USER_ENV, ""), os.environ.get(PASSWORD_ENV, "")
    return (user, password) if user and password else None


def git_revision(root: Path) -> str:
    """'<branch>@sha1:<commit>' of the checkout holding root."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()
    try:
        return f"{git('rev-parse', '--abbrev-ref', 'HEAD')}@sha1:{git('rev-parse', 'HEAD')}"
    except (OSError, subprocess.CalledProcessError) as err:
        raise FleetError(f"{root}: cannot read the source commit with git ({err}); pass --revision") from None


def model_sizes(models: dict[str, Artifact]) -> dict[str, int]:
    """version -> the bytes a site pulls for it (its layers)."""
    return {v: sum(len(layer.data) for layer in a.layers) for v, a in models.items()}


def pinned_versions(fleet: Fleet, env: str) -> list[str]:
    """The model versions env's sites pin."""
    return sorted({s.model.version for s in fleet.of(env)})


def model_artifacts(fleet: Fleet, env: str, models_dir: Path) -> dict[str, Artifact]:
    """version -> artifact for each model version the env's sites pin, from models_dir/<name>/<version>/."""
    problems, found = [], {}
    for version in pinned_versions(fleet, env):
        folder = models_dir / fleet.model.name / version
        files = artifact.model_files(folder) if folder.is_dir() else {}
        if not files:
            problems.append(f"{folder}: no model files for {fleet.model.name} version {version}")
        else:
            found[version] = artifact.model_artifact(files, fleet.model.name, version)
    if problems:
        raise FleetError("\n".join(problems))
    return found


SAMPLE_WEIGHTS_BYTES = 64 * 1024
SAMPLE_NOTE = ("A sample model made by ./kit fleet.sample-model to try the fleet without AzureML; not a trained "
               "model.\nReplace this folder with the registered model's files (az ml model download).\n")


def sample_weights(name: str, version: str, size: int = SAMPLE_WEIGHTS_BYTES) -> bytes:
    """`size` deterministic bytes of a SHA-256 chain seeded by the model's name and version."""
    block, out = f"{name}:{version}".encode(), bytearray()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def write_samples(fleet: Fleet, env: str, models_dir: Path) -> tuple[list[Path], list[Path]]:
    """(folders written, folders kept because they already hold files) for every version env's sites pin."""
    written, kept = [], []
    for version in pinned_versions(fleet, env):
        folder = models_dir / fleet.model.name / version
        if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")):
            kept.append(folder)
            continue
        _write_folder(folder, {"model.bin": sample_weights(fleet.model.name, version),
                               "labels.txt": b"ok\ndefect\n", "SAMPLE.txt": SAMPLE_NOTE.encode()})
        written.append(folder)
    return written, kept


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    """The folder with exactly these files, or as it was (staged beside it, then renamed)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name, data in files.items():
            (stage / name).write_bytes(data)
        stage.chmod(0o755)
        if folder.is_dir():
            shutil.rmtree(folder)  # it holds no file: checked by the caller
        stage.rename(folder)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def hold_artifacts(fleet: Fleet, env: str, rendered: list[RenderedSite], revision: str) -> dict[str, Artifact]:
    """Per site, the release with its workloads stopped (fleet.render.held), pushed as hold-<release>."""
    source = fleet.environments[env].source
    return {r.site.name: artifact.site_artifact(r.held, source, revision) for r in rendered}


def build(fleet: Fleet, env: str, models_dir: Path, revision: str) -> tuple[dict[str, Artifact], list[RenderedSite],
                                                                            dict[str, Artifact]]:
    """Models, rendered sites and their artifacts, all in memory (nothing pushed)."""
    if not REVISION.match(revision):
        raise FleetError(f"--revision: '{revision}' must be '<branch|tag>@sha1:<40 hex commit>'")
    models = model_artifacts(fleet, env, models_dir)
    rendered = render_env(fleet, env, {v: a.digest for v, a in models.items()}, model_sizes(models))
    source = fleet.environments[env].source
    sites = {r.site.name: artifact.site_artifact(r.content, source, revision) for r in rendered}
    return models, rendered, sites


def push_release(fleet: Fleet, env: str, name: str, models: dict[str, Artifact], sites: dict[str, Artifact],
                 revision: str, pusher: Pusher | None = None, holds: dict[str, Artifact] | None = None) -> Release:
    """Push every model and site artifact under the release tag, each site's hold artifact under
    hold-<release> (idempotent: blobs present are skipped)."""
    if not (TAG.match(name) and TAG.match(flux.HOLD_PREFIX + name)):  # hold-<release> and pre-<release> too
        raise FleetError(f"--name: '{name}' is not a valid OCI tag of at most {128 - len(flux.HOLD_PREFIX)} characters")
    view = fleet.environments[env]
    pusher = pusher or Pusher(registry_url(view), credentials())
    for version, model in models.items():
        pusher.push(f"models/{fleet.model.name}", model, (version,))
    jobs = [(flux.repository_path(env, site), art, name) for site, art in sites.items()]
    jobs += [(flux.repository_path(env, site), art, flux.HOLD_PREFIX + name) for site, art in (holds or {}).items()]
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda job: pusher.push(job[0], job[1], (job[2],)), jobs))
    return Release(env, name, revision, {v: a.digest for v, a in models.items()},
                   {site: art.digest for site, art in sites.items()})
