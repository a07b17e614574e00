"""Promotions against a simulated fleet whose registry is the real one: waves, budgets, offline sites,
windows, and the release moved back when a wave fails."""
import secrets
from datetime import datetime, timezone


from fleet import flux
from fleet.artifact import Pusher, site_artifact
from fleet.config import Window
from fleet.plan import late_sites
from fleet.promote import Promotion, RegistryTags
from fleet.status import StatusStore
from tests.fleet import fleetgen
from tests.fleet.simfleet import SimFleet, SimSite

START = datetime(2026, 12, 7, 0, 0, tzinfo=timezone.utc)  # a Monday
HOUR = 3600.0


class World:
    """A generated fleet on r1, artifacts of r1 and r2 pushed for each site, a simulated Flux per site."""

    def __init__(self, registry, tmp, count=20, broken=lambda s: False, offline=None, windows=None, sim=None, **plan):
        self.env = f"env{secrets.token_hex(3)}"
        tmp.mkdir(parents=True, exist_ok=True)
        self.sites = fleetgen.sites(count, windows, env=self.env)
        self.plan = fleetgen.plan(tmp, self.sites, **plan)
        self.pusher = Pusher(registry.url, registry.user(f"release-{self.env}", [("*", ("pull", "push"))]))
        self.tags = RegistryTags(self.pusher)
        self.digests = {}
        for site in self.sites:
            repo = flux.repository_path(self.env, site.name)
            for release in ("r1", "r2"):
                art = site_artifact({"site.yaml": f"{site.name} {release}\n".encode()}, "https://example.test",
                                    f"main@sha1:{secrets.token_hex(20)}")
                self.digests[(site.name, release)] = self.pusher.push(repo, art, (release,))
            self.pusher.tag(repo, self.digests[(site.name, "r1")], flux.LIVE_TAG)
        offline = offline or {}
        self.sims = [SimSite(s, broken={self.digests[(s.name, "r2")]} if broken(s) else set(),
                             offline=offline.get(s.name, []), applied=self.digests[(s.name, "r1")],
                             **(sim(s, self.digests[(s.name, "r2")]) if sim else {}))
                     for s in self.sites]
        self.fleet = SimFleet(self.env, self.sims, self.tags, StatusStore(tmp / "status"), START)
        self.fleet.advance(START.timestamp() + 1800)  # every site has reported r1

    def promotion(self, release="r2", run_id="run-1", tags=None):
        return Promotion(self.plan, release, tags or self.tags, self.fleet.statuses, self.fleet, run_id,
                         log=lambda m: None, sites={s.name: s for s in self.sites})

    def live(self, site):
        return self.tags.get(flux.repository_path(self.env, site), flux.LIVE_TAG)[0]

    def on(self, release):
        return {s.name for s in self.sites if self.live(s.name) == self.digests[(s.name, release)]}

    def never_left_the_two_releases(self):
        for sim in self.sims:
            assert set(sim.history) <= {self.digests[(sim.site.name, r)] for r in ("r1", "r2")}


def test_waves_follow_the_plan_canary_first_last_wave_takes_the_rest(registry, tmp_path):
    world = World(registry, tmp_path)
    names = [w.name for w in world.plan.waves]
    assert names == ["canary", "early", "eu", "rest"]
    assert world.plan.waves[0].sites == ("site-0000",)
    assert len(world.plan.waves[1].sites) == 4  # ceil(0.2 * 20)
    assert all(int(s[-4:]) % 2 == 0 for s in world.plan.waves[2].sites)
    assert sum(len(w.sites) for w in world.plan.waves) == 20


def test_a_good_release_reaches_every_site_and_an_offline_one_converges_on_return(registry, tmp_path):
    back = START.timestamp() + 30 * HOUR
    world = World(registry, tmp_path, offline={"site-0019": [(0, back)]}, offlineDeadline="1h")
    outcome = world.promotion().run()
    assert outcome.result == "done"
    rest = next(c for c in outcome.waves if c.name == "rest")
    assert rest.offline == 1 and rest.failed == 0  # counted apart, not as a failure
    assert world.on("r2") == {s.name for s in world.sites}  # its tag moved: it follows when back
    assert world.sims[-1].applied == world.digests[("site-0019", "r1")]
    world.fleet.keep({"site-0019"})
    world.fleet.advance(back + 2 * HOUR)
    assert world.sims[-1].applied == world.digests[("site-0019", "r2")]
    world.never_left_the_two_releases()


def test_a_broken_release_is_halted_at_the_canary_and_moved_back(registry, tmp_path):
    world = World(registry, tmp_path, broken=lambda s: True)
    outcome = world.promotion().run()
    assert outcome.result == "halted" and outcome.halted_wave == "canary" and outcome.polls_to_halt <= 1
    assert world.on("r1") == {s.name for s in world.sites}
    assert sum(1 for sim in world.sims if world.digests[(sim.site.name, "r2")] in sim.history) == 1
    world.fleet.advance(world.fleet.now() + HOUR)
    assert world.sims[0].applied == world.digests[("site-0000", "r1")] and world.sims[0].state == "healthy"
    world.never_left_the_two_releases()
    assert world.promotion(run_id="run-2").run().result == "halted"  # a re-run does not promote it again


def test_failures_in_one_wave_over_its_budget_halt_there_earlier_waves_keep_the_release(registry, tmp_path):
    world = World(registry, tmp_path, broken=lambda s: s.labels["region"] == "eu" and s.name != "site-0000")
    outcome = world.promotion().run()
    assert outcome.result == "halted" and outcome.halted_wave in ("early", "eu") and outcome.polls_to_halt <= 1
    halted = next(w for w in world.plan.waves if w.name == outcome.halted_wave)
    assert world.on("r1") >= set(halted.sites)
    earlier = {s for w in world.plan.waves[:world.plan.waves.index(halted)] for s in w.sites}
    assert world.on("r2") == earlier
    bad = sum(1 for sim in world.sims if world.digests[(sim.site.name, "r2")] in sim.history and sim.state == "failed")
    assert bad <= halted.budget + 1
    world.never_left_the_two_releases()


def test_a_site_whose_window_opens_after_the_deadline_is_named_and_does_not_hold_the_wave(registry, tmp_path):
    sunday = Window(cron="0 6 * * 0", timeZone="Europe/Paris", duration="2h")  # opens six days later
    world = World(registry, tmp_path, windows={"site-0003": [sunday]}, offlineDeadline="1h")
    late = late_sites(world.plan, {s.name: s for s in world.sites}, START)
    assert {w: s for w, s in late.items() if s} == {"early": ["site-0003"]}
    outcome = world.promotion().run()
    assert outcome.result == "done"
    early = next(c for c in outcome.waves if c.name == "early")
    assert early.progressing == 1 and early.failed == 0  # online, waiting for its window
    sim = world.sims[3]
    assert sim.applied == world.digests[("site-0003", "r1")]
    world.fleet.keep({"site-0003"})
    world.fleet.advance(datetime(2026, 12, 13, 5, 0, tzinfo=timezone.utc).timestamp() + 1800)  # 06:30 Paris
    assert sim.applied == world.digests[("site-0003", "r2")]


def test_a_site_bootstrapped_outside_its_window_applies_the_current_release_at_once(registry, tmp_path):
    sunday = Window(cron="0 6 * * 0", timeZone="Europe/Paris", duration="2h")  # opens six days later
    world = World(registry, tmp_path, count=3, windows={"site-0002": [sunday]})
    fresh = world.sims[2]
    fresh.applied = fresh.scheduled = ""  # its Flux objects were just created: it never applied a release
    world.fleet.advance(world.fleet.now() + 600)
    assert fresh.applied == world.digests[("site-0002", "r1")]
    report = world.fleet.statuses.read(world.env)["site-0002"]
    assert (report.state, report.digest) == ("healthy", world.digests[("site-0002", "r1")])
    assert report.reported_at > world.fleet.now() - 600  # not silent (offline) until its window
