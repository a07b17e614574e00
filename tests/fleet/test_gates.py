"""The wave gate: a probe of budget + 1, never wider while failures are pending, passes only on healthy
reports of the release, and a deadline with too little evidence halts with its reason (never `done`)."""
import pytest

from fleet.config import FleetError
from fleet.gate import Verdict, WaveCount, count, decide
from fleet.status import SiteStatus
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


def test_a_moved_site_that_never_reports_the_release_is_waited_for_until_the_deadline(registry, tmp_path):
    waves = [{"name": "all", "failureBudget": 2, "minHealthy": 2}]
    world = World(registry, tmp_path, count=3, sim=lambda s, d: {"stuck": {d}} if s.name == "site-0002" else {},
                  **dict(ONE_WAVE, waves=waves))
    world.fleet.advance(world.fleet.now() + 8e-7)  # as a wall clock reads: between two microseconds
    began = world.fleet.now()
    outcome = world.promotion().run()
    # found by the real-Flux promotion (tests/realapi): the window check compared float seconds after a round
    # trip through datetime (microseconds rounded): an open window was "in the future" 4 times in 10, moved
    # sites not yet reporting were excused as late, and the wave was judged at once (it halted before any report)
    assert outcome.result == "halted", outcome
    assert outcome.reason == "deadline: 1 online sites with an open window did not report the release: site-0002"
    assert world.fleet.now() - began >= 2 * HOUR


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


# the gate's two functions on their own: the figures and reasons `./kit fleet promote` prints (its JSON output
# carries every WaveCount field), at the boundaries the rollouts above cross only by chance
RELEASE, OLD = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def _status(site, state, digest=RELEASE, age_s=0.0, fetch_failed=""):
    return SiteStatus(site, state, digest, 1000.0 - age_s, fetch_failed=fetch_failed)


def test_the_count_sees_each_site_as_the_gate_must():
    reports = {"a": _status("a", "healthy"), "b": _status("b", "failed"), "c": _status("c", "healthy", OLD),
               "e": _status("e", "healthy", OLD, fetch_failed=RELEASE), "g": _status("g", "progressing"),
               "h": _status("h", "progressing"), "i": _status("i", "failed", OLD),
               "f": _status("f", "healthy", OLD, age_s=600, fetch_failed=RELEASE)}  # a stale pull error: offline
    sites = ("a", "b", "c", "d", "e", "f", "g", "h", "i")
    counted = count("w", sites, {"a", "b", "c", "e", "g"}, reports, dict.fromkeys(sites, RELEASE), 1000.0, 300)
    assert counted == WaveCount("w", 9, healthy=1, failed=2, progressing=4, offline=2, failed_sites=["b", "e"],
                                pending_sites=["c", "g"])


def _counted(failed=(), pending=(), healthy=0, offline=0):
    return WaveCount("w", 20, healthy=healthy, failed=len(failed), offline=offline, failed_sites=list(failed),
                     pending_sites=list(pending))


def test_the_probe_is_budget_plus_one_less_each_failure_and_each_silent_moved_site():
    assert decide(_counted(), 2, 3, 10, False, set()) == Verdict("move", 3)
    assert decide(_counted(failed=["a"], pending=["b"]), 2, 3, 10, False, set()) == Verdict("move", 1)
    assert decide(_counted(), 2, 3, 2, False, set()) == Verdict("move", 2)  # no more than are left
    assert decide(_counted(failed=["a"], pending=["b", "c"]), 2, 3, 10, False, set()) == Verdict("wait")


def test_a_wave_passes_before_its_deadline_once_every_moved_site_reported_healthy():
    assert decide(_counted(healthy=3), 2, 3, 0, False, set()) == Verdict("pass")
    assert decide(_counted(pending=["s1"], healthy=3), 2, 3, 0, False, set()) == Verdict("wait")
    assert decide(_counted(pending=["s1"], healthy=3), 2, 3, 0, False, {"s1"}) == Verdict("pass")  # late


def test_the_gates_halts_give_their_figures_and_name_the_sites():
    assert decide(_counted(failed=["s1", "s2"]), 1, 1, 5, False, set()) == Verdict(
        "halt", reason="2 sites failed on the release, over the budget of 1: s1, s2")
    assert decide(_counted(pending=["s1", "s2"], healthy=1, offline=4), 2, 3, 0, True, set()) == Verdict(
        "halt", reason="too little evidence: 1 healthy reports on the release, 3 needed (2 moved sites silent, "
                       "4 offline)")
    silent = [f"s{i:02d}" for i in range(12)]
    assert decide(_counted(pending=silent, healthy=3), 12, 3, 0, True, set()) == Verdict(
        "halt", reason="deadline: 12 online sites with an open window did not report the release: "
                       + ", ".join(silent[:10]))
    assert decide(_counted(pending=["s1"], healthy=3), 2, 3, 0, True, set()).reason.startswith("deadline: 1 online")
    # late sites (window closed) and a failure fill the probe: the reason once read "0 online sites ... report"
    held = _counted(failed=["f1"], pending=["l1", "l2"], healthy=1)
    assert decide(held, 2, 1, 4, False, {"l1", "l2"}) == Verdict("wait")
    assert decide(held, 2, 1, 4, True, {"l1", "l2"}) == Verdict(
        "halt", reason="deadline: 4 online sites never moved: the probe's 3 places are held by 1 failed and 2 late "
                       "sites")
