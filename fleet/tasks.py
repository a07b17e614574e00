"""Invoke collection `fleet`: render, release, promote and status of the sites that pull their state (Flux).

Only invoke is imported here; each task imports what it needs when it runs."""
from __future__ import annotations

import json as jsonlib
from pathlib import Path

from invoke import Collection, Exit, task

ROOT_HELP = "the fleet's seeds folder (default: fleet/ of this checkout)"
OUT = Path("out/fleet")
MODELS = "out/models"


def _fleet(root: str, env: str = ""):
    """The seeds under root (with environment env when given); exit 2 listing every problem."""
    from fleet.config import DEFAULT_ROOT, FleetError, load_fleet
    try:
        fleet = load_fleet(Path(root) if root else DEFAULT_ROOT)
        if env:
            fleet.check_env(env)
        return fleet
    except FleetError as err:
        raise Exit(str(err), code=2) from None


def _models(fleet, env: str, models: str) -> dict:
    from fleet.config import FleetError
    from fleet.release import model_artifacts
    try:
        return model_artifacts(fleet, env, Path(models))
    except FleetError as err:
        raise Exit(f"{err}\nput the registered model's files there (az ml model download), or make a small sample "
                   f"model to try the fleet: ./kit fleet.sample-model --env {env}"
                   + (f" --models {models}" if models != MODELS else ""), code=2) from None


@task(help={"env": "environment (fleet.yaml environments)", "root": ROOT_HELP,
            "models": f"folder of model files: <models>/<name>/<version>/ (default {MODELS})"})
def sample_model(c, env, root="", models=MODELS):
    """Write a small sample model for each version env's sites pin (never over real model files), to try
    fleet.render and a lab's fleet.release without AzureML."""
    from fleet.release import write_samples
    written, kept = write_samples(_fleet(root, env), env, Path(models))
    for folder in written:
        print(f"sample model written: {folder}")
    for folder in kept:
        print(f"kept (already holds model files): {folder}")


@task(help={"env": "environment (fleet.yaml environments)", "root": ROOT_HELP,
            "models": "folder of model files: <models>/<name>/<version>/ (default out/models)",
            "out": "where to write (default out/fleet/<env>)"})
def render(c, env, root="", models=MODELS, out=""):
    """Validate every site's objects of env and write them (content/ is each site's artifact, flux.yaml its Flux)."""
    from fleet.config import FleetError
    from fleet.render import render_env, write_env
    fleet = _fleet(root)
    from fleet.release import model_sizes
    artifacts = _models(fleet, env, models)
    digests = {v: a.digest for v, a in artifacts.items()}
    try:
        rendered = render_env(fleet, env, digests, model_sizes(artifacts))
    except FleetError as err:
        raise Exit(str(err), code=2) from None
    dest = Path(out) if out else OUT / env
    write_env(rendered, dest)
    print(f"rendered {len(rendered)} site(s) of {env} into {dest}")


@task(help={"env": "environment", "name": "release tag (default: git-<commit 12>)", "root": ROOT_HELP,
            "models": "folder of model files (default out/models)",
            "revision": "origin revision '<branch>@sha1:<commit>' (default: this checkout's HEAD)",
            "json": "print the release as one JSON object"})
def release(c, env, name="", root="", models=MODELS, revision="", json=False):
    """Push the models and one Flux OCI artifact per site of env under the release tag (sites do not move).
    Registry credentials come from FLEET_REGISTRY_USER / FLEET_REGISTRY_PASSWORD, never from arguments."""
    from common.oci import RegistryError
    from fleet.config import FleetError
    from fleet.release import build, git_revision, hold_artifacts, push_release
    fleet = _fleet(root)
    try:
        revision = revision or git_revision(fleet.root)
        models_built, rendered, sites = build(fleet, env, Path(models), revision)
        name = name or f"git-{revision.rsplit(':', 1)[1][:12]}"
        result = push_release(fleet, env, name, models_built, sites, revision,
                              holds=hold_artifacts(fleet, env, rendered, revision))
    except FleetError as err:
        raise Exit(str(err), code=2) from None
    except RegistryError as err:
        raise Exit(f"release {env}: {err}", code=1) from None
    if json:
        print(jsonlib.dumps(result.__dict__, sort_keys=True))
    else:
        print(f"released {name} of {env}: {len(result.sites)} site artifact(s), revision {revision}")


STATUS_HELP = ("the sites' latest reports: a folder (default out/fleet-status), or `registry`: the env's registry "
               "(fleet-status/<env>, where the deployed fleet.receive writes)")


def _plan(fleet, env: str):
    from fleet.config import FleetError
    from fleet.plan import load_rollout
    try:
        return load_rollout(env, fleet.of(env), fleet.root / "rollout.yaml")
    except FleetError as err:
        raise Exit(str(err), code=2) from None


def _statuses(fleet, env: str, statuses: str):
    """The status store: a folder, or `registry` (fleet/receiving/store.py; FLEET_REGISTRY_* credentials)."""
    from fleet.status import StatusStore
    if statuses != "registry":
        return StatusStore(Path(statuses))
    from fleet.artifact import Pusher
    from fleet.promote import RegistryTags
    from fleet.receiving.store import RegistryStatusStore
    from fleet.release import credentials, registry_url
    return RegistryStatusStore(RegistryTags(Pusher(registry_url(fleet.environments[env]), credentials())))


@task(help={"env": "environment", "release": "the release tag fleet.release pushed", "root": ROOT_HELP,
            "run_id": "this run's id (default $BUILD_BUILDID): a re-run with the same id resumes", "statuses": STATUS_HELP})
def promote(c, env, release, root="", run_id="", statuses="out/fleet-status"):
    """Move env's sites to the release wave by wave (fleet/rollout.yaml); halt and move a failed wave back.
    Re-run after done, it watches the late sites (a late failure moves them back).
    Exit 0 when every wave is done, 1 when halted or stopped (another run holds env, registry unreachable)."""
    import os
    from common.oci import RegistryError
    from fleet.artifact import Pusher
    from fleet.promote import Promotion, PromotionError, RegistryTags
    from fleet.release import credentials, registry_url
    fleet = _fleet(root)
    plan = _plan(fleet, env)
    tags = RegistryTags(Pusher(registry_url(fleet.environments[env]), credentials()))
    promotion = Promotion(plan, release, tags, _statuses(fleet, env, statuses), run_id=run_id or os.environ.get("BUILD_BUILDID", ""),
                          sites={s.name: s for s in fleet.of(env)})
    try:
        outcome = promotion.run()
    except (PromotionError, RegistryError) as err:
        raise Exit(f"fleet.promote {env} {release}: {err}", code=1) from None
    print(jsonlib.dumps({"env": env, "release": release, "result": outcome.result, "haltedWave": outcome.halted_wave,
                         "reason": outcome.reason, "late": outcome.late, "lateReverted": outcome.late_reverted,
                         "waves": [w.__dict__ for w in outcome.waves]}, sort_keys=True))
    if outcome.result != "done":
        raise Exit(code=1)


@task(help={"env": "environment", "root": ROOT_HELP, "statuses": STATUS_HELP, "json": "print one JSON object",
            "html": "write a self-contained HTML page to this file",
            "history": "also each promotion's outcome and the late sites, from the registry (FLEET_REGISTRY_*)"})
def status(c, env, root="", statuses="out/fleet-status", json=False, html="", history=False):
    """Every site's last report rolled up per wave: a table, --json, or an --html page."""
    import time
    from rich.console import Console
    from rich.table import Table
    from common.oci import RegistryError
    from fleet import rollup
    fleet = _fleet(root)
    plan = _plan(fleet, env)
    now = time.time()
    try:
        reports = _statuses(fleet, env, statuses).read(env)
    except RegistryError as err:
        raise Exit(f"fleet.status {env}: {err}", code=1) from None
    table = rollup.rows(plan, reports, now)
    data = rollup.summary(plan, table, now)
    if history:
        data |= _history(root, env)
    if html:
        from common.files import atomic_write
        atomic_write(Path(html), rollup.to_html(data), 0o644)
    if json:
        print(rollup.to_json(data))
        return
    view = Table("wave", "sites", "healthy", "progressing", "failed", "offline", title=f"fleet {env}")
    for wave in data["waves"]:
        view.add_row(wave["name"], *(str(wave[k]) for k in ("sites", "healthy", "progressing", "failed", "offline")))
    Console().print(view)
    if history:
        past = Table("release", "run", "result", "wave", "reason", "late", title=f"promotions of {env}")
        for entry in data["history"]:
            past.add_row(entry["release"], entry["run"], entry["result"], entry["wave"], entry["reason"],
                         str(len(entry["late"])))
        Console().print(past)
        Console().print(f"late (moved while offline or outside their window): {', '.join(data['late']) or 'none'}")


def _history(root: str, env: str) -> dict:
    """{history: [...], late: [...]} of env from its registry's fleet-state/<env>."""
    from common.oci import RegistryError
    from fleet.artifact import Pusher
    from fleet.promote import RegistryTags
    from fleet.release import credentials, registry_url
    fleet = _fleet(root, env)
    tags = RegistryTags(Pusher(registry_url(fleet.environments[env]), credentials()))
    try:
        past = tags.read_doc(f"fleet-state/{env}", "history") or {"promotions": []}
        state = tags.read_doc(f"fleet-state/{env}", "state") or {}
    except RegistryError as err:
        raise Exit(f"fleet.status {env}: {err}", code=1) from None
    return {"history": past["promotions"], "late": state.get("late", [])}


@task(help={"env": "the environment whose sites report here", "root": ROOT_HELP,
            "listen": "address:port (default 0.0.0.0:8443; plain HTTP only on 127.0.0.1)", "statuses": STATUS_HELP,
            "cert": "the TLS certificate chain file (PEM)", "key": "its private key file (PEM)"})
def receive(c, env, root="", listen="0.0.0.0:8443", statuses="out/fleet-status", cert="", key=""):
    """Receive env's sites' Flux events (Provider generic-hmac) over HTTPS into the status store: each site posts
    to /sites/<env>/<site> signed with its own key, derived from the master key in FLEET_WEBHOOK_KEY."""
    import os
    from fleet.receiver import InsecureListen, server, tls_context
    from fleet.receiving.keys import MIN_MASTER_BYTES
    fleet = _fleet(root, env)
    master, receiver = os.environ.get("FLEET_WEBHOOK_KEY", "").encode(), fleet.environments[env].receiver
    host, _, port = listen.rpartition(":")
    problems = [p for p, bad in (
        (f"FLEET_WEBHOOK_KEY: set it to the master report key (at least {MIN_MASTER_BYTES} bytes)",
         len(master) < MIN_MASTER_BYTES),
        ("--listen: give address:port", not port.isdigit()),
        ("--cert and --key: give both or neither", bool(cert) != bool(key)),
        (f"fleet.yaml: environments.{env}.receiver: missing (notifyType generic-hmac with a receiver)",
         receiver is None)) if bad]
    tls = None
    try:
        tls = tls_context(Path(cert), Path(key)) if cert and key else None
    except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
        problems.append(f"--cert/--key: cannot load the certificate and key: {type(err).__name__}")
    if problems:
        raise Exit("fleet.receive: " + "\nfleet.receive: ".join(problems), code=2)
    try:
        httpd = server((host or "0.0.0.0", int(port)), _statuses(fleet, env, statuses), master,
                       {env: receiver.key_generation}, tls)
    except InsecureListen as err:
        raise Exit(f"fleet.receive: --listen: {err}", code=2) from None
    print(f"fleet.receive: {'https' if tls else 'http'} on {listen} for {env}")
    httpd.serve_forever()


def _control(env: str, root: str, change) -> None:
    """One change of env's promotion controls (fleet/control.py) in its registry."""
    from common.oci import RegistryError
    from fleet.artifact import Pusher
    from fleet.promote import RegistryTags
    from fleet.release import credentials, registry_url
    fleet = _fleet(root, env)
    try:
        change(RegistryTags(Pusher(registry_url(fleet.environments[env]), credentials())))
    except RegistryError as err:
        raise Exit(f"fleet {env}: {err}", code=1) from None


CONTROL_HELP = {"env": "environment", "release": "the release being promoted", "root": ROOT_HELP}


@task(help=CONTROL_HELP | {"by": "who aborts (shown in the halt's reason; default $USER)"})
def abort(c, env, release, root="", by=""):
    """Halt env's promotion of release and move its current wave back (the running fleet.promote stops)."""
    import os
    from fleet import control
    _control(env, root, lambda tags: control.abort(tags, env, release, by or os.environ.get("USER", "")))


@task(help=CONTROL_HELP)
def pause(c, env, release, root=""):
    """No further site moves in env's promotion of release, its wave's deadline stopped (failures still halt)."""
    from fleet import control
    _control(env, root, lambda tags: control.pause(tags, env, release, True))


@task(help=CONTROL_HELP)
def resume(c, env, release, root=""):
    """Undo fleet.pause."""
    from fleet import control
    _control(env, root, lambda tags: control.pause(tags, env, release, False))


@task(help=CONTROL_HELP | {"by": "who holds (shown in the state's reason; default $USER)"})
def hold(c, env, release, root="", by=""):
    """Emergency: every site of env on release moved back at once, whatever its window (a running promotion of it
    is aborted first; its lock is then taken). Exit 1 when another run keeps the lock."""
    import os
    from common.oci import RegistryError
    from fleet.artifact import Pusher
    from fleet.promote import Promotion, PromotionError, RegistryTags
    from fleet.recall.hold import hold as hold_release
    from fleet.release import credentials, registry_url
    from fleet.status import StatusStore
    fleet = _fleet(root)
    plan = _plan(fleet, env)
    tags = RegistryTags(Pusher(registry_url(fleet.environments[env]), credentials()))
    promotion = Promotion(plan, release, tags, StatusStore(Path("out/fleet-status")), run_id=f"hold-{release}")
    try:
        moved = hold_release(promotion, by or os.environ.get("USER", "") or "an operator")
    except (PromotionError, RegistryError) as err:
        raise Exit(f"fleet.hold {env} {release}: {err}", code=1) from None
    print(jsonlib.dumps({"env": env, "release": release, "movedBack": moved}, sort_keys=True))


@task(help=CONTROL_HELP | {"wave": "the wave marked approval: true in rollout.yaml"})
def approve(c, env, release, wave, root=""):
    """Let env's promotion of release enter the wave (then re-run fleet.promote with the same run id)."""
    from fleet import control
    _control(env, root, lambda tags: control.approve(tags, env, release, wave))


fleet = Collection("fleet")
for _task in (render, release, promote, status, receive, abort, pause, resume, hold, approve, sample_model):
    fleet.add_task(_task)
