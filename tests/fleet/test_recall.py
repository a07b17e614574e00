"""Moving sites back outside their windows, on a simulated fleet over the real registry: a halt's revert and an
emergency hold reach sites whose window closed (their pin), a site with no previous release is held (not left on
the failed release), and late sites stay watched after the promotion: a late failure moves them back."""
import io
import json
import tarfile
import time

import kubernetes_validate
import yaml

from fleet import control, flux
from fleet.artifact import Pusher, site_artifact
from fleet.config import Window, load_fleet
from fleet.promote import RegistryTags
from fleet.recall.hold import hold
from fleet.release import build, hold_artifacts, push_release
from fleet.render import K8S_VERSION
from fleet.status import SiteStatus, StatusStore
from tests.fleet.test_release import REVISION, point_at
from tests.fleet.test_rollout import HOUR, START, World
from tests.fleet.test_status import _fast_rollout, _kit

NIGHTLY = Window(cron="0 0 * * *", timeZone="UTC", duration="2h")  # open from START, closed 2 h later


def _nightly(count):
    return {f"site-{i:04d}": [NIGHTLY] for i in range(count)}


def _ran(world, sim, release):
    return world.digests[(sim.site.name, release)] in sim.history


class AbortAt:
    """The simulated fleet's clock; an operator runs fleet.abort at a given time."""

    def __init__(self, world, at):
        self.world, self.at = world, at

    def now(self):
        return self.world.fleet.now()

    def sleep(self, seconds):
        self.world.fleet.sleep(seconds)
        if self.now() >= self.at:
            control.abort(self.world.tags, self.world.env, "r2", "oncall")


def test_a_halt_after_the_window_closed_moves_the_sites_back_at_once(registry, tmp_path):
    # the sites apply the release in their window; the promotion soaks 3 h and is aborted after the window closed
    world = World(registry, tmp_path, count=4, windows=_nightly(4), canaries=[],
                  waves=[{"name": "all", "failureBudget": 0}], soak="3h")
    promotion = world.promotion()
    promotion.clock = AbortAt(world, START.timestamp() + 2.5 * HOUR)
    outcome = promotion.run()
    assert outcome.result == "halted" and outcome.reason == "aborted by oncall"
    assert world.fleet.now() > START.timestamp() + 2 * HOUR  # the window is closed
    assert all(_ran(world, sim, "r2") for sim in world.sims)
    world.fleet.advance(world.fleet.now() + 600)  # two polls of the unscheduled providers
    for sim in world.sims:
        assert sim.applied == world.digests[(sim.site.name, "r1")], sim.site.name
        assert sim.scheduled == world.digests[(sim.site.name, "r2")]  # its window has not resolved live again
    world.never_left_the_two_releases()


def test_an_emergency_hold_of_a_finished_release_reaches_every_site_outside_its_window(registry, tmp_path):
    world = World(registry, tmp_path, count=4, windows=_nightly(4), canaries=[],
                  waves=[{"name": "all", "failureBudget": 0}], soak="10m")
    assert world.promotion().run().result == "done"
    world.fleet.advance(START.timestamp() + 3 * HOUR)  # the window closed long ago
    assert all(sim.applied == world.digests[(sim.site.name, "r2")] for sim in world.sims)
    moved = hold(world.promotion(run_id="hold-1"), "oncall")
    assert sorted(moved) == [s.name for s in world.sites] and world.on("r1") == set(moved)
    world.fleet.advance(world.fleet.now() + 600)
    assert all(sim.applied == world.digests[(sim.site.name, "r1")] for sim in world.sims)
    state = world.tags.read_doc(f"fleet-state/{world.env}", "state")
    assert (state["phase"], state["reason"]) == ("halted", "held by oncall")
    assert world.promotion(run_id="run-2").run().result == "halted"  # not promoted again by a re-run
    # the next day's window resolves live (r1) again: the pin no longer matters, the site stays on r1
    world.fleet.advance(START.timestamp() + 24.5 * HOUR)
    assert all(sim.scheduled == sim.applied == world.digests[(sim.site.name, "r1")] for sim in world.sims)


def test_a_site_with_no_previous_release_is_held_not_left_on_the_failed_one(registry, tmp_path):
    world = World(registry, tmp_path, count=2, broken=lambda s: s.name == "site-0000", canaries=["site-0000"],
                  waves=[{"name": "all", "failureBudget": 0}])
    repo = flux.repository_path(world.env, "site-0000")
    held = site_artifact({"site.yaml": b"site-0000 r2, stopped\n"}, "https://example.test", "main@sha1:" + "0" * 40)
    held_digest = world.pusher.push(repo, held, (flux.HOLD_PREFIX + "r2",))
    first = world.sims[0]
    # a new site whose first release is r2: live is r2 and there is no pre-r2 (the World moved live to r1 first;
    # a registry cannot remove a tag, so the test moves it on to r2 as a first move would have)
    world.tags.put(repo, flux.LIVE_TAG, world.tags.get(repo, "r2")[1])
    first.applied = first.scheduled = ""
    world.fleet.advance(world.fleet.now() + 600)
    assert first.applied == world.digests[("site-0000", "r2")] and first.state == "failed"
    outcome = world.promotion().run()
    assert outcome.result == "halted" and outcome.halted_wave == "canary"
    assert world.live("site-0000") == held_digest  # no pre-r2: held
    world.fleet.advance(world.fleet.now() + 600)
    assert first.applied == held_digest and first.state == "healthy"


def test_a_late_site_that_fails_after_the_promotion_is_moved_back_by_the_rerun(registry, tmp_path):
    back = START.timestamp() + 8 * HOUR
    world = World(registry, tmp_path, count=10, broken=lambda s: s.name == "site-0009",
                  offline={"site-0009": [(0, back)], "site-0008": [(0, back + 4 * HOUR)]}, offlineDeadline="1h")
    outcome = world.promotion().run()
    assert outcome.result == "done" and set(outcome.late) >= {"site-0008", "site-0009"}
    world.fleet.advance(back + HOUR)  # site-0009 is back: it applies r2 and fails
    assert world.sims[9].applied == world.digests[("site-0009", "r2")] and world.sims[9].state == "failed"
    rerun = world.promotion().run()
    assert rerun.result == "done" and "site-0009" in rerun.reason and rerun.late == []
    assert set(rerun.late_reverted) == {"site-0008", "site-0009"}  # the late sites not yet healthy on r2
    assert world.live("site-0009") == world.digests[("site-0009", "r1")]
    assert world.live("site-0008") == world.digests[("site-0008", "r1")]  # before it ever ran r2
    world.fleet.advance(back + 6 * HOUR)
    assert world.sims[9].applied == world.digests[("site-0009", "r1")]
    assert not _ran(world, world.sims[8], "r2")
    history = world.tags.read_doc(f"fleet-state/{world.env}", "history")["promotions"]
    assert history[-1]["wave"] == "late" and "site-0009" in history[-1]["reason"]


def test_a_late_failure_during_the_promotion_halts_it(registry, tmp_path):
    back = START.timestamp() + 2.5 * HOUR  # site-0001's wave (early) passed without it, eu is rolling
    world = World(registry, tmp_path, count=20, broken=lambda s: s.name == "site-0001",
                  offline={"site-0001": [(0, back)]}, offlineDeadline="1h")
    outcome = world.promotion().run()
    assert outcome.result == "halted" and "late sites failed on the release: site-0001" in outcome.reason
    assert "site-0001" in outcome.late_reverted
    assert world.live("site-0001") == world.digests[("site-0001", "r1")]


def test_kit_hold_moves_a_first_release_to_its_hold_artifact_through_the_real_registry(seeds, registry, tmp_path):
    point_at(seeds, registry)
    _fast_rollout(seeds)
    fleet = load_fleet(seeds)
    models, rendered, sites = build(fleet, "qa", seeds.parent / "models", REVISION)
    user = registry.user("holder", [("*", ("pull", "push"))])
    pusher = Pusher(registry.url, user)
    release = push_release(fleet, "qa", "k1", models, sites, REVISION, pusher,
                           holds=hold_artifacts(fleet, "qa", rendered, REVISION))
    store = StatusStore(tmp_path / "status")
    store.record("qa", SiteStatus("qa-line", "healthy", release.sites["qa-line"], time.time() + 60))
    env = {"FLEET_REGISTRY_USER": user[0], "FLEET_REGISTRY_PASSWORD": user[1], "PATH": "/usr/bin:/bin"}
    common = ("--env", "qa", "--root", str(seeds))
    done = _kit("fleet.promote", "--release", "k1", "--run-id", "k-1", "--statuses", str(store.root), *common, env=env)
    assert done.returncode == 0, done.stderr
    held = _kit("fleet.hold", "--release", "k1", "--by", "oncall", *common, env=env)
    assert held.returncode == 0, held.stderr
    assert json.loads(held.stdout.splitlines()[-1])["movedBack"] == ["qa-line"]
    tags, repo = RegistryTags(pusher), flux.repository_path("qa", "qa-line")
    hold_digest = tags.get(repo, flux.HOLD_PREFIX + "k1")[0]
    assert tags.get(repo, flux.LIVE_TAG)[0] == tags.get(repo, flux.PIN_TAG)[0] == hold_digest  # no pre-k1: held
    layer = json.loads(tags.get(repo, hold_digest)[1])["layers"][0]["digest"]
    with tarfile.open(fileobj=io.BytesIO(pusher.blob(repo, layer))) as tar:
        objects = list(yaml.safe_load_all(tar.extractfile("site.yaml").read()))
    assert {o["kind"] for o in objects} == {"Namespace", "Deployment"}  # the rest pruned
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert all(o["spec"]["replicas"] == 0 for o in objects if o["kind"] == "Deployment")
    state = tags.read_doc("fleet-state/qa", "state")
    assert (state["phase"], state["reason"]) == ("halted", "held by oncall") and user[1] not in held.stdout
