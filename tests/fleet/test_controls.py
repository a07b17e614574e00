"""Operators' controls of a promotion, through the registry: abort, pause/resume, approval between waves."""
from fleet import control
from tests.fleet.test_rollout import HOUR, World

TWO_WAVES = dict(canaries=[], waves=[{"name": "first", "share": 0.5, "failureBudget": 0},
                                     {"name": "second", "failureBudget": 1, "approval": True}],
                 soak="10m", offlineDeadline="2h")


def test_a_wave_with_approval_waits_until_approved_then_the_rerun_goes_on(registry, tmp_path):
    world = World(registry, tmp_path, count=8, **TWO_WAVES)
    first = world.promotion().run()
    assert first.result == "waiting" and "wave second waits for approval" in first.reason
    assert world.on("r2") == set(world.plan.waves[0].sites)
    control.approve(world.tags, world.env, "r2", "second")
    assert world.promotion(run_id="run-2").run().result == "done"
    assert world.on("r2") == {s.name for s in world.sites}


def test_abort_halts_the_running_promotion_and_moves_its_wave_back(registry, tmp_path):
    world = World(registry, tmp_path, count=8, **dict(TWO_WAVES, waves=TWO_WAVES["waves"][:1]))
    sleep = world.fleet.sleep

    def abort_after_an_hour(seconds):
        sleep(seconds)
        if world.fleet.now() - began > 0.2 * HOUR:
            control.abort(world.tags, world.env, "r2", "alice")

    began = world.fleet.now()
    world.fleet.sleep = abort_after_an_hour
    outcome = world.promotion().run()
    assert outcome.result == "halted" and outcome.reason == "aborted by alice"
    assert world.on("r1") == {s.name for s in world.sites}


def test_a_paused_promotion_moves_no_site_and_its_deadline_waits(registry, tmp_path):
    world = World(registry, tmp_path, count=8, **dict(TWO_WAVES, waves=TWO_WAVES["waves"][:1]))
    control.pause(world.tags, world.env, "r2", True)
    sleep, seen = world.fleet.sleep, []

    def resume_after_three_hours(seconds):
        sleep(seconds)
        seen.append(len(world.on("r2")))
        if world.fleet.now() - began > 3 * HOUR:
            control.pause(world.tags, world.env, "r2", False)

    began = world.fleet.now()
    world.fleet.sleep = resume_after_three_hours
    outcome = world.promotion().run()
    assert outcome.result == "done"  # not halted at the 2 h deadline while paused
    assert max(seen[:170]) == 0 and world.on("r2") == {s.name for s in world.sites}


def test_kit_abort_pause_and_approve_write_the_controls_a_promotion_reads(seeds, registry):
    from fleet.artifact import Pusher
    from fleet.promote import RegistryTags
    from tests.fleet.test_release import point_at
    from tests.fleet.test_status import _kit
    point_at(seeds, registry)
    user = registry.user("operator", [("*", ("pull", "push"))])
    env = {"FLEET_REGISTRY_USER": user[0], "FLEET_REGISTRY_PASSWORD": user[1], "PATH": "/usr/bin:/bin"}
    for args in (("fleet.pause",), ("fleet.approve", "--wave", "stores"), ("fleet.abort", "--by", "bob")):
        done = _kit(*args, "--env", "production", "--release", "p9", "--root", str(seeds), env=env)
        assert done.returncode == 0, done.stderr
    doc = control.read(RegistryTags(Pusher(registry.url, user)), "production")
    assert control.paused(doc, "p9") and control.approved(doc, "p9", "stores")
    assert control.aborted(doc, "p9") == "bob" and control.aborted(doc, "p8") == ""
    bad = _kit("fleet.abort", "--env", "staging", "--release", "p9", "--root", str(seeds), env=env)
    assert bad.returncode == 2 and "no 'staging'" in bad.stderr and "Traceback" not in bad.stderr


def test_kit_status_history_lists_each_promotion_once_and_the_late_sites(seeds, registry, tmp_path):
    import json
    import time
    from fleet.artifact import Pusher
    from fleet.config import load_fleet
    from fleet.release import build, push_release
    from fleet.status import SiteStatus, StatusStore
    from tests.fleet.test_release import REVISION, point_at
    from tests.fleet.test_status import _fast_rollout, _kit
    point_at(seeds, registry)
    _fast_rollout(seeds)
    fleet = load_fleet(seeds)
    models, _, sites = build(fleet, "qa", seeds.parent / "models", REVISION)
    user = registry.user("historian", [("*", ("pull", "push"))])
    release = push_release(fleet, "qa", "h1", models, sites, REVISION, Pusher(registry.url, user))
    store = StatusStore(tmp_path / "status")
    store.record("qa", SiteStatus("qa-line", "healthy", release.sites["qa-line"], time.time() + 60))
    env = {"FLEET_REGISTRY_USER": user[0], "FLEET_REGISTRY_PASSWORD": user[1], "PATH": "/usr/bin:/bin"}
    common = ("--env", "qa", "--root", str(seeds), "--statuses", str(store.root))
    for run in ("b-1", "b-2"):  # the second run finds it done: no second line
        assert _kit("fleet.promote", "--release", "h1", "--run-id", run, *common, env=env).returncode == 0
    shown = _kit("fleet.status", "--history", "--json", *common, env=env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert [(h["release"], h["result"], h["run"]) for h in data["history"]] == [("h1", "done", "b-1")]
    assert data["late"] == [] and user[1] not in shown.stdout
