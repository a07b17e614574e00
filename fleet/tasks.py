"""Invoke collection `fleet`: render, release, promote and status of the sites that pull their state (Flux).

Only invoke is imported here; each task imports what it needs when it runs."""
from __future__ import annotations

import json as jsonlib
from pathlib import Path

from invoke import Collection, Exit, task

ROOT_HELP = "the fleet's seeds folder (default: fleet/ of this checkout)"
OUT = Path("out/fleet")


def _fleet(root: str):
    from fleet.config import DEFAULT_ROOT, FleetError, load_fleet
    try:
        return load_fleet(Path(root) if root else DEFAULT_ROOT)
    except FleetError as err:
        raise Exit(str(err), code=2) from None


def _models(fleet, env: str, models: str) -> dict:
    from fleet.config import FleetError
    from fleet.release import model_artifacts
    try:
        return model_artifacts(fleet, env, Path(models))
    except FleetError as err:
        raise Exit(str(err), code=2) from None


@task(help={"env": "environment (fleet.yaml environments)", "root": ROOT_HELP,
            "models": "folder of model files: <models>/<name>/<version>/ (default out/models)",
            "out": "where to write (default out/fleet/<env>)"})
def render(c, env, root="", models="out/models", out=""):
    """Validate every site's objects of env and write them (content/ is each site's artifact, flux.yaml its Flux)."""
    from fleet.config import FleetError
    from fleet.render import render_env, write_env
    fleet = _fleet(root)
    digests = {v: a.digest for v, a in _models(fleet, env, models).items()}
    try:
        rendered = render_env(fleet, env, digests)
    except FleetError as err:
        raise Exit(str(err), code=2) from None
    dest = Path(out) if out else OUT / env
    write_env(rendered, dest)
    print(f"rendered {len(rendered)} site(s) of {env} into {dest}")


@task(help={"env": "environment", "name": "release tag (default: git-<commit 12>)", "root": ROOT_HELP,
            "models": "folder of model files (default out/models)",
            "revision": "origin revision '<branch>@sha1:<commit>' (default: this checkout's HEAD)",
            "json": "print the release as one JSON object"})
def release(c, env, name="", root="", models="out/models", revision="", json=False):
    """Push the models and one Flux OCI artifact per site of env under the release tag (sites do not move).
    Registry credentials come from FLEET_REGISTRY_USER / FLEET_REGISTRY_PASSWORD, never from arguments."""
    from edge_hosts.oci import RegistryError
    from fleet.config import FleetError
    from fleet.release import build, git_revision, push_release
    fleet = _fleet(root)
    try:
        revision = revision or git_revision(fleet.root)
        models_built, _, sites = build(fleet, env, Path(models), revision)
        name = name or f"git-{revision.rsplit(':', 1)[1][:12]}"
        result = push_release(fleet, env, name, models_built, sites, revision)
    except FleetError as err:
        raise Exit(str(err), code=2) from None
    except RegistryError as err:
        raise Exit(f"release {env}: {err}", code=1) from None
    if json:
        print(jsonlib.dumps(result.__dict__, sort_keys=True))
    else:
        print(f"released {name} of {env}: {len(result.sites)} site artifact(s), revision {revision}")


fleet = Collection("fleet")
for _task in (render, release):
    fleet.add_task(_task)
