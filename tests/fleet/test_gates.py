"""The wave gate: a probe of budget + 1, never wider while failures are pending, passes only on healthy
reports of the release, and a deadline with too little evidence halts with its reason (never `done`)."""
import pytest

from fleet.config import FleetError
from tests.fleet import fleetgen
from tests.fleet.test_rollout import HOUR, World

ONE_WAVE = dict(canaries=[], waves=[{"name": "all", "failureBudget": 2}], offlineDeadline="2h", soak="10m")


def _ran(world, release="r2"):
    return {sim.site.name for sim in world.sims if world.digests[(sim.site.name, release)] in sim.history}


def test_a_release_breaking_two_of_three_sites_reaches_at_most_budget_plus_one_broken_sites(registry, tmp_path):
    world = World(registry, tmp_path, count=30, broken=lambda s: int(s.name[-4:]) % 3 != 0, **ONE_WAVE)
    outcome = world.promotion().run()
    broken_ran = {s for s in _ran(world) if int(s[-4:]) % 3 != 0}
    assert outcome.result == "halted" and "over the budget of 2" in outcome.reason
    assert len(broken_ran) <= 3  # budget + 1 (the old probe-then-widen reached 9 and more)
    assert world.on("r1") == {s.name for s in world.sites}
    world.never_left_the_two_releases()


def test_silent_sites_are_no_evidence_the_deadline_halts_with_the_reason(registry, tmp_path):
    world = World(registry, tmp_path, count=10, sim=lambda s, d: {"silent": True}, **ONE_WAVE)
    outcome = world.promotion().run()
    assert outcome.result == "halted" and outcome.reason.startswith("too little evidence: 0 healthy reports")
    assert "10 offline" in outcome.reason and _ran(world) == set()  # nothing moves towards silence
    assert world.on("r1") == {s.name for s in world.sites}


def test_sites_that_cannot_fetch_the_release_count_as_failures_and_halt_it(registry, tmp_path):
    world = World(registry, tmp_path, count=10, sim=lambda s, d: {"unfetchable": {d}}, **ONE_WAVE)
    began = world.fleet.now()
    outcome = world.promotion().run()
    assert outcome.result == "halted" and "3 sites failed on the release, over the budget of 2" in outcome.reason
    assert world.fleet.now() - began < HOUR  # their pull errors, not the 2 h deadline
    assert _ran(world) == set() and world.on("r1") == {s.name for s in world.sites}


def test_sites_failing_on_the_old_release_are_not_failures_of_the_new_one(registry, tmp_path):
    world = World(registry, tmp_path, count=9, sim=lambda s, d: {"state": "failed"} if s.name < "site-0003" else {},
                  **ONE_WAVE)
    assert sum(r.state == "failed" for r in world.fleet.statuses.read(world.env).values()) == 3
    outcome = world.promotion().run()
    assert outcome.result == "done" and world.on("r2") == {s.name for s in world.sites}


def test_a_wave_passes_only_with_min_healthy_reports(registry, tmp_path):
    waves = [{"name": "all", "failureBudget": 0, "minHealthy": 5}]
    world = World(registry, tmp_path, count=4, **dict(ONE_WAVE, waves=waves))
    outcome = world.promotion().run()
    assert outcome.result == "halted" and "4 healthy reports on the release, 5 needed" in outcome.reason


def test_done_means_every_online_site_reported_the_release(registry, tmp_path):
    world = World(registry, tmp_path, count=12, **ONE_WAVE)
    outcome = world.promotion().run()
    assert outcome.result == "done" and outcome.late == []
    reports = world.fleet.statuses.read(world.env)
    assert all(reports[s.name].digest == world.digests[(s.name, "r2")] and reports[s.name].state == "healthy"
               for s in world.sites)


def test_a_failure_budget_over_the_waves_size_is_bad_input(tmp_path):
    sites = fleetgen.sites(3)
    with pytest.raises(FleetError, match=r"waves\[0\]\.failureBudget: 4 is over the wave's 3 sites"):
        fleetgen.plan(tmp_path, sites, canaries=[], waves=[{"name": "all", "failureBudget": 4}])
