"""The promotion's own logic in process (fleet/promote.py), fast enough for mutation testing: the in-memory
registry and status store of tests/fleet/simfleet.py, a clock that moves only when the promotion sleeps, and
sites that report at each sleep what their `live` tag holds (healthy, or failed on a broken digest). Pinned here:
which sites move and when, the revert of every moved site on a halt, `pin` and `hold-` tags, the lock, the
state saved and resumed, the outcome and its reason, late sites, history."""
import time

import pytest

from fleet import control, flux
from fleet.artifact import site_artifact
from fleet.config import Window
from fleet.promote import (HISTORY_KEPT, LOCK_LEASE_S, LOCK_SETTLE_S, Promotion, PromotionError, WallClock)
from fleet.status import SiteStatus
from tests.fleet import fleetgen
from tests.fleet.simfleet import MemoryStatuses, MemoryTags
from tests.fleet.test_rollout import START

ENV = "unit"
STATE = f"fleet-state/{ENV}"
T0 = START.timestamp()
ONE_WAVE = [{"name": "all", "failureBudget": 1}]
SUNDAY = Window(cron="0 2 * * SUN", timeZone="UTC", duration="2h")  # closed on START, a Monday 00:00


class Fleet:
    """Sites on r1 (artifacts of r1 and r2 in each one's repository), the promotion's clock and status source.
    Each sleep advances the clock and lets every site not `offline` or `silent` report: its `live` digest, or
    the one it ran before when it has windows (all closed in these tests)."""

    def __init__(self, tmp, count=5, waves=ONE_WAVE, windows=None, **plan):
        self.t = T0
        self.tags = RecordingTags(self)
        self.statuses = MemoryStatuses()
        self.sites = fleetgen.sites(count, windows, env=ENV)
        self.plan = fleetgen.plan(tmp, self.sites, **{"canaries": [], "waves": waves, **plan})
        self.art = {}
        for site in self.sites:
            for release in ("r1", "r2", "hold-r2"):
                art = site_artifact({"site.yaml": f"{site.name} {release}\n".encode()}, "https://example.test",
                                    "main@sha1:" + "1" * 40)
                self.tags.push(self.repo(site.name), art, (release,))
                self.art[(site.name, release)] = art
            self.tags.put(self.repo(site.name), flux.LIVE_TAG, art_manifest(self, site.name, "r1"))
        self.broken, self.offline, self.silent, self.slept, self.ran = set(), set(), set(), [], {}
        self.on_sleep = lambda: None
        self.tags.writes.clear()
        self.report()

    @staticmethod
    def repo(site):
        return flux.repository_path(ENV, site)

    def digest(self, site, release="r2"):
        return self.art[(site, release)].digest

    def tag(self, site, tag):
        found = self.tags.get(self.repo(site), tag)
        return found and found[0]

    def on(self, release):
        return sorted(s.name for s in self.sites if self.tag(s.name, flux.LIVE_TAG) == self.digest(s.name, release))

    # the Clock protocol
    def now(self):
        return self.t

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.t += seconds
        self.on_sleep()
        self.report()

    def report(self, state=None):
        for site in self.sites:
            live = self.tag(site.name, flux.LIVE_TAG)
            if site.name in self.offline | self.silent or not live:
                continue
            live = self.ran.get(site.name, live) if site.windows else live
            self.ran[site.name] = live
            said = state or ("failed" if site.name in self.broken else "healthy")
            self.statuses.record(ENV, SiteStatus(site.name, said, live, self.t))

    def acquired(self):
        """A promotion holding the lock, for its steps on their own."""
        promotion = self.promotion()
        promotion.acquire()
        return promotion

    def promotion(self, release="r2", run_id="run-1", log=None):
        self.logged = []
        return Promotion(self.plan, release, self.tags, self.statuses, self, run_id,
                         log=log or self.logged.append, sites={s.name: s for s in self.sites})

    def moves(self, tag=flux.LIVE_TAG):
        """(time, site, digest) of each write of `tag` to a site's repository, in order."""
        return [(t, repo.rsplit("/", 1)[1], digest) for t, repo, name, digest in self.tags.writes
                if name == tag and repo.startswith("fleet/")]

    def doc(self, tag):
        return self.tags.read_doc(STATE, tag)


def art_manifest(fleet, site, release):
    return fleet.art[(site, release)].manifest


class RecordingTags(MemoryTags):
    """The in-memory registry, keeping (time, repository, tag, digest or doc) of every write."""

    def __init__(self, clock):
        super().__init__(clock)
        self.writes = []

    def put(self, repository, tag, manifest):
        super().put(repository, tag, manifest)
        self.writes.append((self.clock.now(), repository, tag, self.manifests[(repository, tag)][0]))

    def write_doc(self, repository, tag, doc):
        super().write_doc(repository, tag, doc)
        self.writes.append((self.clock.now(), repository, tag, dict(doc)))


def _lock(fleet, holder="run-9", expires=None, process="other"):
    fleet.tags.write_doc(STATE, "lock", {"holder": holder, "process": process, "release": "r2",
                                         "expires": T0 + 600 if expires is None else expires})


# which sites move and when
def test_a_wave_moves_budget_plus_one_sites_then_one_more_per_healthy_report(tmp_path):
    fleet = Fleet(tmp_path, count=5)
    outcome = fleet.promotion().run()
    polls = {}
    for t, site, digest in fleet.moves():
        assert digest == fleet.digest(site)
        polls.setdefault(round((t - T0 - LOCK_SETTLE_S) / 60), []).append(site)
    assert polls == {0: ["site-0000", "site-0001"], 1: ["site-0002", "site-0003"], 2: ["site-0004"]}
    assert outcome.result == "done" and outcome.reason == "" and outcome.late == [] and outcome.halted_wave == ""
    assert (outcome.waves[0].healthy, outcome.waves[0].failed, outcome.waves[0].sites) == (5, 0, 5)
    assert fleet.on("r2") == [s.name for s in fleet.sites]
    assert fleet.slept[0] == LOCK_SETTLE_S and set(fleet.slept[1:]) == {60.0}
    soaked = fleet.t - (T0 + LOCK_SETTLE_S + 3 * 60)  # passed at the third poll, then soaked 20 minutes
    assert 20 * 60 <= soaked < 21 * 60
    assert fleet.logged == ["wave all: 5/5 healthy, 0 offline"]


def test_waves_go_in_order_each_after_the_one_before_passed_its_soak(tmp_path):
    waves = [{"name": "first", "share": 0.4, "failureBudget": 0}, {"name": "rest", "failureBudget": 0}]
    fleet = Fleet(tmp_path, count=5, waves=waves, soak="10m")
    assert fleet.promotion().run().result == "done"
    first = [t for t, site, _ in fleet.moves() if site in fleet.plan.waves[0].sites]
    rest = [t for t, site, _ in fleet.moves() if site in fleet.plan.waves[1].sites]
    assert len(first) == 2 and len(rest) == 3 and min(rest) - max(first) >= 10 * 60


def test_sites_whose_window_opens_first_move_first_and_offline_ones_are_not_waited_for(tmp_path):
    fleet = Fleet(tmp_path, count=4, waves=[{"name": "all", "failureBudget": 2, "minHealthy": 1}],
                  windows={"site-0000": [SUNDAY], "site-0001": [SUNDAY]}, offlineAfter="10m", offlineDeadline="1h")
    fleet.offline = {"site-0003"}
    fleet.t += 11 * 60  # site-0003 silent for longer than offlineAfter: offline
    fleet.report()
    outcome = fleet.promotion().run()
    order = [site for _, site, _ in fleet.moves()]
    # the probe of 3: the open window first, then the Sunday windows by name; the offline one at the pass,
    # which the late ones (closed windows) do not hold up
    assert order == ["site-0002", "site-0000", "site-0001", "site-0003"]
    assert fleet.t - T0 < 11 * 60 + 5 * 60 + 20 * 60
    assert outcome.result == "done" and outcome.late == ["site-0000", "site-0001", "site-0003"]
    assert fleet.doc("state")["late"] == ["site-0000", "site-0001", "site-0003"]


def test_moving_keeps_the_old_live_as_pre_release_once_and_skips_sites_already_on_it(tmp_path):
    fleet = Fleet(tmp_path, count=3)
    fleet.tags.put(fleet.repo("site-0001"), "pre-r2", art_manifest(fleet, "site-0001", "hold-r2"))
    fleet.tags.put(fleet.repo("site-0002"), flux.LIVE_TAG, art_manifest(fleet, "site-0002", "r2"))
    fleet.tags.writes.clear()
    assert fleet.promotion().run().result == "done"
    assert fleet.tag("site-0000", "pre-r2") == fleet.digest("site-0000", "r1")
    assert fleet.tag("site-0001", "pre-r2") == fleet.digest("site-0001", "hold-r2")  # written once, kept
    assert fleet.tag("site-0002", "pre-r2") is None  # already on the release: nothing written
    assert [site for _, site, _ in fleet.moves()] == ["site-0000", "site-0001"]
    assert [site for _, site, _ in fleet.moves("pre-r2")] == ["site-0000"]
    assert fleet.moves(flux.PIN_TAG) == []  # no site was pinned


def test_a_site_with_no_live_tag_gets_the_release_and_no_pre_release(tmp_path):
    fleet = Fleet(tmp_path, count=2)
    del fleet.tags.manifests[(fleet.repo("site-0001"), flux.LIVE_TAG)]
    assert fleet.promotion().run().result == "done"
    assert fleet.on("r2") == ["site-0000", "site-0001"] and fleet.tag("site-0001", "pre-r2") is None


def test_a_site_without_the_releases_artifact_stops_the_promotion_and_frees_the_lock(tmp_path):
    fleet = Fleet(tmp_path, count=2)
    with pytest.raises(PromotionError) as raised:
        fleet.promotion(release="r3").run()
    assert str(raised.value) == "fleet/unit/site-0000: no artifact tagged r3: run fleet.release first"
    assert fleet.doc("lock")["holder"] == "" and fleet.on("r1") == ["site-0000", "site-0001"]


def test_a_pinned_site_healthy_on_the_old_live_gets_its_pin_moved_to_it_first(tmp_path):
    fleet = Fleet(tmp_path, count=3, waves=[{"name": "all", "failureBudget": 2}])
    hold = {s: art_manifest(fleet, s, "hold-r2") for s in ("site-0000", "site-0001", "site-0002")}
    for site in hold:
        fleet.tags.put(fleet.repo(site), flux.PIN_TAG, hold[site])
    fleet.tags.put(fleet.repo("site-0002"), flux.PIN_TAG, art_manifest(fleet, "site-0002", "r1"))
    promotion = fleet.acquired()
    fleet.statuses.record(ENV, SiteStatus("site-0001", "failed", fleet.digest("site-0001", "r1"), fleet.t))
    fleet.tags.writes.clear()
    for site in hold:
        promotion.move(site)
    assert fleet.tag("site-0000", flux.PIN_TAG) == fleet.digest("site-0000", "r1")  # healthy on old live
    assert fleet.tag("site-0001", flux.PIN_TAG) == fleet.digest("site-0001", "hold-r2")  # failed: pin stays
    assert [(s, d) for _, s, d in fleet.moves(flux.PIN_TAG)] == [("site-0000", fleet.digest("site-0000", "r1"))]
    assert fleet.tags.writes.index(next(w for w in fleet.tags.writes if w[2] == flux.PIN_TAG)) < \
        fleet.tags.writes.index(next(w for w in fleet.tags.writes if w[2] == flux.LIVE_TAG))
    assert fleet.on("r2") == ["site-0000", "site-0001", "site-0002"]


# halts and reverts
def test_failures_over_the_budget_halt_and_move_every_moved_site_back_pin_first(tmp_path):
    fleet = Fleet(tmp_path, count=6, waves=[{"name": "first", "share": 0.33, "failureBudget": 0},
                                           {"name": "rest", "failureBudget": 1}], soak="5m")
    fleet.broken = {"site-0003", "site-0004"}
    outcome = fleet.promotion().run()
    assert outcome.result == "halted" and outcome.halted_wave == "rest"
    assert outcome.reason == "2 sites failed on the release, over the budget of 1: site-0003, site-0004"
    assert (outcome.waves[1].failed, outcome.waves[1].failed_sites) == (2, ["site-0003", "site-0004"])
    # site-0002 and site-0003 probe; site-0003 failed, site-0002 healthy: site-0004 moves, fails a poll later
    assert outcome.waves[0].healthy == 2 and outcome.polls_to_halt == 1
    assert fleet.on("r2") == ["site-0000", "site-0001"]  # the wave before keeps the release
    assert fleet.on("r1") == ["site-0002", "site-0003", "site-0004", "site-0005"]
    pins = [(s, d) for _, s, d in fleet.moves(flux.PIN_TAG)]
    assert pins == [(s, fleet.digest(s, "r1")) for s in ("site-0002", "site-0003", "site-0004")]  # not 0005
    for site in ("site-0002", "site-0003", "site-0004"):
        writes = [w[2] for w in fleet.tags.writes if w[1] == fleet.repo(site)]
        assert writes[-2:] == [flux.PIN_TAG, flux.LIVE_TAG]
    assert fleet.logged[-1] == f"wave rest: halted, moved back: {outcome.reason}"
    state = fleet.doc("state")
    assert (state["phase"], state["wave"], state["reason"]) == ("halted", 1, outcome.reason)
    assert [d["phase"] for t, r, tag, d in fleet.tags.writes if tag == "state"][-2:] == ["reverting", "halted"]


def test_polls_to_halt_counts_from_the_first_failure_seen(tmp_path):
    fleet = Fleet(tmp_path, count=4, waves=[{"name": "all", "failureBudget": 1}])
    fleet.broken = {"site-0000", "site-0002"}
    outcome = fleet.promotion().run()
    # poll 1: site-0000 failed, site-0001 healthy; site-0002 moves; poll 2: it failed too: halt
    assert outcome.result == "halted" and outcome.polls_to_halt == 1
    assert outcome.reason == "2 sites failed on the release, over the budget of 1: site-0000, site-0002"
    assert fleet.on("r1") == ["site-0000", "site-0001", "site-0002", "site-0003"]


def test_a_first_release_site_is_held_and_one_without_a_hold_artifact_is_left_and_logged(tmp_path):
    fleet = Fleet(tmp_path, count=2, waves=[{"name": "all", "failureBudget": 0}])
    for site in ("site-0000", "site-0001"):
        del fleet.tags.manifests[(fleet.repo(site), flux.LIVE_TAG)]
    del fleet.tags.manifests[(fleet.repo("site-0001"), "hold-r2")]
    promotion = fleet.acquired()
    for site in ("site-0000", "site-0001"):
        promotion.move(site)
        promotion.revert(site)
    assert fleet.tag("site-0000", flux.LIVE_TAG) == fleet.tag("site-0000", flux.PIN_TAG) == \
        fleet.digest("site-0000", "hold-r2")
    assert fleet.on("r2") == ["site-0001"] and fleet.tag("site-0001", flux.PIN_TAG) is None
    assert fleet.logged == ["site-0001: no previous release and no hold-r2; left on r2"]


def test_revert_leaves_a_site_not_on_the_release_alone(tmp_path):
    fleet = Fleet(tmp_path, count=1)
    fleet.tags.put(fleet.repo("site-0000"), "pre-r2", art_manifest(fleet, "site-0000", "hold-r2"))
    promotion = fleet.acquired()
    fleet.tags.writes.clear()
    promotion.revert("site-0000")
    assert fleet.tags.writes == [] and fleet.on("r1") == ["site-0000"]


def test_a_halted_promotion_rerun_stays_halted_and_moves_a_half_reverted_wave_back(tmp_path):
    fleet = Fleet(tmp_path, count=3, waves=[{"name": "all", "failureBudget": 0}])
    fleet.tags.write_doc(STATE, "state", {"release": "r2", "wave": 0, "phase": "reverting", "reason": "why",
                                          "late": [], "moved": ["site-0000"], "wave_started": T0,
                                          "soak_started": None})
    promotion = fleet.promotion()
    promotion.acquire()
    promotion.move("site-0000")
    promotion.release_lock()
    outcome = fleet.promotion(run_id="run-2").run()
    assert (outcome.result, outcome.halted_wave, outcome.reason) == ("halted", "all", "why")
    assert fleet.on("r1") == ["site-0000", "site-0001", "site-0002"]
    assert fleet.doc("history")["promotions"][-1]["result"] == "halted"
    again = fleet.promotion(run_id="run-3").run()
    assert again.result == "halted" and len(fleet.doc("history")["promotions"]) == 1  # found it finished
    fleet.tags.write_doc(STATE, "state", {k: v for k, v in fleet.doc("state").items() if k != "reason"})
    assert fleet.promotion(run_id="run-4").run().reason == ""  # a saved halt with no reason has none


def test_a_release_that_never_gets_healthy_reports_halts_at_the_deadline(tmp_path):
    fleet = Fleet(tmp_path, count=3, waves=[{"name": "all", "failureBudget": 0}], offlineDeadline="30m")
    fleet.silent = {"site-0000"}
    fleet.report = lambda state=None: Fleet.report(fleet, "progressing")  # nobody gets healthy on it
    began = fleet.t
    outcome = fleet.promotion().run()
    assert outcome.result == "halted"
    assert outcome.reason == "too little evidence: 0 healthy reports on the release, 1 needed " \
                             "(1 moved sites silent, 1 offline)"
    assert 30 * 60 <= fleet.t - began < 32 * 60 and fleet.on("r1") == ["site-0000", "site-0001", "site-0002"]


# the lock
def test_a_lock_held_by_another_run_stops_the_promotion_with_who_and_until_when(tmp_path):
    fleet = Fleet(tmp_path, count=2)
    _lock(fleet, expires=T0 + 1)
    with pytest.raises(PromotionError) as raised:
        fleet.promotion().run()
    assert str(raised.value) == ("unit is being promoted by run run-9 (release r2); its lock expires at "
                                 "2026-12-07T00:00:01Z: wait for it, or re-run that run")
    assert fleet.doc("lock")["holder"] == "run-9" and fleet.doc("state") is None and fleet.on("r1")
    assert fleet.promotion().busy()


def test_an_expired_or_released_lock_is_taken(tmp_path):
    fleet = Fleet(tmp_path, count=2)
    _lock(fleet, expires=T0)
    assert not fleet.promotion().busy()
    assert fleet.promotion().run().result == "done"
    assert fleet.doc("lock") == {"holder": "", "release": "", "expires": 0}
    assert not fleet.promotion().busy() and not fleet.promotion(run_id="run-1").busy()


def test_the_lock_names_the_run_its_process_and_release_for_a_lease(tmp_path):
    fleet = Fleet(tmp_path, count=2)
    promotion = fleet.promotion()
    promotion.acquire()
    lock = fleet.doc("lock")
    assert lock == {"holder": "run-1", "process": promotion.process, "release": "r2",
                    "expires": T0 + LOCK_LEASE_S}
    assert fleet.slept == [LOCK_SETTLE_S] and promotion.busy() is False
    assert fleet.promotion(run_id="run-2").busy()
    other = fleet.promotion(run_id="run-1")  # the same run id in another process: not held against it
    assert not other.busy() and other.process != promotion.process


def test_a_rival_write_while_settling_wins_and_this_run_stops(tmp_path):
    fleet = Fleet(tmp_path, count=2)
    rival = fleet.promotion(run_id="run-1")  # even of the same run id: another process
    fleet.on_sleep = lambda: rival._write_lock()
    with pytest.raises(PromotionError, match=r"^unit is being promoted by run run-1 \(release r2\)"):
        fleet.promotion().run()
    assert fleet.doc("lock")["process"] == rival.process and fleet.doc("state") is None


def test_releasing_clears_only_this_processes_lock(tmp_path):
    fleet = Fleet(tmp_path, count=2)
    mine = fleet.promotion()
    mine.acquire()
    fleet.promotion(run_id="run-1").release_lock()  # the same run id, another process
    assert fleet.doc("lock")["process"] == mine.process
    mine.release_lock()
    assert fleet.doc("lock") == {"holder": "", "release": "", "expires": 0}


def test_a_long_wave_renews_its_lease_every_quarter_and_it_never_lapses(tmp_path):
    fleet = Fleet(tmp_path, count=3, soak="3h")
    expiries = []
    fleet.on_sleep = lambda: expiries.append((fleet.t, fleet.doc("lock")["expires"]))
    assert fleet.promotion().run().result == "done"
    locks = [(t, d["expires"]) for t, repo, tag, d in fleet.tags.writes if tag == "lock" and d["holder"]]
    assert len(locks) >= 12  # 3 h and more in quarters of the lease
    assert all(expires == t + LOCK_LEASE_S for t, expires in locks)
    gaps = [b[0] - a[0] for a, b in zip(locks, locks[1:])]
    assert all(LOCK_LEASE_S / 4 < gap <= LOCK_LEASE_S / 4 + 60 for gap in gaps)
    assert all(expires - t >= LOCK_LEASE_S * 3 / 4 - 60 for t, expires in expiries)


def test_a_run_that_lost_its_lock_stops_at_the_next_renewal_and_leaves_the_other_lock(tmp_path):
    fleet = Fleet(tmp_path, count=3, soak="3h")
    taken = []
    fleet.on_sleep = lambda: fleet.t > T0 + 1800 and not taken and (taken.append(fleet.t) or _lock(
        fleet, expires=fleet.t + LOCK_LEASE_S))
    with pytest.raises(PromotionError) as raised:
        fleet.promotion().run()
    assert str(raised.value).startswith("unit: this run lost its lock: unit is being promoted by run run-9")
    assert fleet.doc("lock")["holder"] == "run-9"
    assert fleet.t - taken[0] <= LOCK_LEASE_S / 4 + 60


# the state, saved and resumed
def test_the_moved_sites_are_saved_before_their_tags_move(tmp_path):
    fleet = Fleet(tmp_path, count=3, waves=[{"name": "all", "failureBudget": 2}])
    assert fleet.promotion().run().result == "done"
    writes = [(tag, d) for t, repo, tag, d in fleet.tags.writes if tag in ("state", flux.LIVE_TAG)]
    first_move = next(i for i, (tag, _) in enumerate(writes) if tag == flux.LIVE_TAG)
    saved = writes[first_move - 1][1]
    assert saved["moved"] == ["site-0000", "site-0001", "site-0002"] and saved["phase"] == "rolling"
    assert saved["wave_started"] == T0 + LOCK_SETTLE_S and saved["soak_started"] is None


def test_the_state_at_each_step_and_when_done(tmp_path):
    fleet = Fleet(tmp_path, count=2, waves=[{"name": "a", "share": 0.5, "failureBudget": 0},
                                           {"name": "b", "failureBudget": 0}], soak="5m")
    outcome = fleet.promotion().run()
    states = [d for t, repo, tag, d in fleet.tags.writes if tag == "state"]
    assert [(s["wave"], s["phase"]) for s in states] == [
        (0, "rolling"), (0, "rolling"), (0, "soaking"), (1, "rolling"), (1, "rolling"), (1, "rolling"),
        (1, "soaking"), (2, "rolling"), (2, "done")]
    soaking = states[2]
    assert soaking["soak_started"] == T0 + LOCK_SETTLE_S + 60 and soaking["moved"] == ["site-0000"]
    assert states[3] == {"release": "r2", "wave": 1, "late": [], "phase": "rolling", "wave_started": None,
                         "soak_started": None, "moved": []}
    assert outcome.result == "done" and fleet.doc("state")["phase"] == "done"
    history = fleet.doc("history")["promotions"]
    assert history == [{"release": "r2", "run": "run-1", "result": "done", "wave": "", "reason": "", "late": [],
                        "at": fleet.t}]


def test_a_resume_moves_the_saved_sites_and_keeps_the_waves_start(tmp_path):
    fleet = Fleet(tmp_path, count=4, waves=[{"name": "all", "failureBudget": 1}], offlineDeadline="30m")
    fleet.silent = {"site-0003"}  # it never reports: the deadline decides
    fleet.tags.write_doc(STATE, "state", {"release": "r2", "wave": 0, "phase": "rolling", "late": [],
                                          "moved": ["site-0003"], "wave_started": T0 - 25 * 60,
                                          "soak_started": None})
    outcome = fleet.promotion().run()
    assert fleet.moves()[0][1] == "site-0003"  # what the saved state says moved, before any new choice
    assert outcome.result == "halted" and outcome.reason == \
        "deadline: 1 online sites with an open window did not report the release: site-0003"
    assert fleet.t - T0 < 10 * 60  # the deadline ran from the saved start


def test_another_releases_unfinished_promotion_must_be_finished_first(tmp_path):
    fleet = Fleet(tmp_path, count=2)
    fleet.tags.write_doc(STATE, "state", {"release": "r1", "wave": 1, "phase": "soaking", "late": []})
    with pytest.raises(PromotionError) as raised:
        fleet.promotion().run()
    assert str(raised.value) == "unit: the promotion of release r1 is unfinished (wave 1, soaking): re-run it first"
    for phase in ("done", "halted"):
        fleet.tags.write_doc(STATE, "state", {"release": "r1", "wave": 1, "phase": phase, "late": ["x"]})
        assert fleet.promotion().run().result == "done" and fleet.doc("state")["late"] == []
        fleet.tags.manifests.update({(fleet.repo(s.name), flux.LIVE_TAG): fleet.tags.get(fleet.repo(s.name), "r1")
                                     for s in fleet.sites})


# operators' controls
def test_a_wave_with_approval_waits_and_goes_on_once_approved(tmp_path):
    waves = [{"name": "first", "share": 0.5, "failureBudget": 0}, {"name": "second", "failureBudget": 0,
                                                                    "approval": True}]
    fleet = Fleet(tmp_path, count=4, waves=waves, soak="5m")
    fleet.offline = {"site-0001"}
    fleet.t += 31 * 60
    waiting = fleet.promotion().run()
    assert waiting.result == "waiting" and waiting.late == ["site-0001"]
    assert waiting.reason == "wave second waits for approval (./kit fleet.approve --wave second)"
    assert fleet.on("r2") == ["site-0000", "site-0001"] and fleet.doc("lock")["holder"] == ""
    control.approve(fleet.tags, ENV, "r1", "second")  # another release's approval counts for nothing
    assert fleet.promotion(run_id="run-2").run().result == "waiting"
    control.approve(fleet.tags, ENV, "r2", "second")
    assert fleet.promotion(run_id="run-3").run().result == "done" and fleet.on("r2") == [
        "site-0000", "site-0001", "site-0002", "site-0003"]


def test_an_abort_of_this_release_halts_and_moves_the_wave_back(tmp_path):
    fleet = Fleet(tmp_path, count=3)
    control.abort(fleet.tags, ENV, "r1", "bob")  # another release's: ignored
    fleet.on_sleep = lambda: fleet.t > T0 + 100 and control.abort(fleet.tags, ENV, "r2", "alice")
    outcome = fleet.promotion().run()
    assert (outcome.result, outcome.reason, outcome.polls_to_halt) == ("halted", "aborted by alice", 0)
    assert fleet.on("r1") == ["site-0000", "site-0001", "site-0002"] and len(fleet.moves()) == 6


def test_a_pause_stops_moves_and_the_deadline_but_not_a_halt_over_the_budget(tmp_path):
    fleet = Fleet(tmp_path, count=3, waves=[{"name": "all", "failureBudget": 0}], offlineDeadline="10m")
    control.pause(fleet.tags, ENV, "r2", True)
    fleet.on_sleep = lambda: fleet.t > T0 + 3600 and control.pause(fleet.tags, ENV, "r2", False)
    outcome = fleet.promotion().run()
    assert outcome.result == "done" and fleet.moves()[0][0] > T0 + 3600  # no move while paused, no deadline
    fleet = Fleet(tmp_path, count=3, waves=[{"name": "all", "failureBudget": 0}], offlineDeadline="10m")
    fleet.broken = {"site-0000"}
    promotion = fleet.promotion()
    fleet.on_sleep = lambda: fleet.moves() and control.pause(fleet.tags, ENV, "r2", True)
    outcome = promotion.run()
    assert outcome.result == "halted" and outcome.reason.startswith("1 sites failed on the release")


def test_a_paused_waves_deadline_is_pushed_back_by_each_poll(tmp_path):
    fleet = Fleet(tmp_path, count=2, waves=[{"name": "all", "failureBudget": 0}])
    control.pause(fleet.tags, ENV, "r2", True)
    fleet.on_sleep = lambda: len(fleet.slept) > 4 and control.pause(fleet.tags, ENV, "r2", False)
    assert fleet.promotion().run().result == "done"
    started = [d["wave_started"] for t, repo, tag, d in fleet.tags.writes if tag == "state" and d["wave_started"]]
    assert started[0] == T0 + LOCK_SETTLE_S and started[1] == T0 + LOCK_SETTLE_S + 4 * 60


# late sites
def test_a_late_failure_during_the_promotion_halts_it_and_moves_late_sites_back(tmp_path):
    waves = [{"name": "first", "share": 0.5, "failureBudget": 0}, {"name": "rest", "failureBudget": 0}]
    fleet = Fleet(tmp_path, count=4, waves=waves, soak="5m", offlineAfter="10m")
    fleet.offline = {"site-0001"}
    fleet.t += 11 * 60
    fleet.broken = {"site-0001"}

    def back_online():
        if fleet.on("r2")[-1:] != ["site-0001"] and fleet.tag("site-0002", flux.LIVE_TAG) == fleet.digest("site-0002"):
            fleet.offline = set()
    fleet.on_sleep = back_online
    outcome = fleet.promotion().run()
    assert outcome.result == "halted" and outcome.halted_wave == "rest"
    assert outcome.reason == "late sites failed on the release: site-0001; 1 late sites moved back"
    assert outcome.late_reverted == ["site-0001"] and outcome.late == [] and outcome.polls_to_halt == 0
    assert (outcome.waves[1].name, outcome.waves[1].sites) == ("rest", 2)
    assert fleet.on("r2") == ["site-0000"]  # the late site and the halted wave moved back
    assert fleet.doc("state")["late_reverted"] == ["site-0001"]


def test_a_rerun_after_done_drops_healthy_late_sites_and_moves_the_rest_back_on_a_late_failure(tmp_path):
    fleet = Fleet(tmp_path, count=4, waves=[{"name": "all", "failureBudget": 1, "minHealthy": 1}],
                  offlineAfter="10m")
    fleet.offline = {"site-0001", "site-0002", "site-0003"}
    fleet.t += 11 * 60
    done = fleet.promotion().run()
    assert done.result == "done" and done.late == ["site-0001", "site-0002", "site-0003"]
    fleet.offline = {"site-0003"}
    fleet.report()
    assert fleet.promotion(run_id="run-2").run().late == ["site-0003"]  # 0001, 0002 reported healthy
    assert len(fleet.doc("history")["promotions"]) == 1
    fleet.offline, fleet.broken = set(), {"site-0003"}
    fleet.report()
    fleet.t += 60
    fleet.statuses.record(ENV, SiteStatus("site-0002", "progressing", fleet.digest("site-0002"), fleet.t))
    fleet.silent = {"site-0002"}  # still applying it
    state = fleet.doc("state") | {"late": ["site-0002", "site-0003"]}
    fleet.tags.write_doc(STATE, "state", state)
    watched = fleet.promotion(run_id="run-3").run()
    assert watched.result == "done" and watched.late == []
    assert watched.reason == "late sites failed on the release: site-0003; 2 late sites moved back"
    assert watched.late_reverted == ["site-0002", "site-0003"] and fleet.on("r1") == ["site-0002", "site-0003"]
    last = fleet.doc("history")["promotions"][-1]
    assert (last["result"], last["wave"], last["reason"]) == ("done", "late", watched.reason)


def test_a_hold_marks_this_releases_promotion_halted_and_leaves_another_ones(tmp_path):
    fleet = Fleet(tmp_path, count=2, waves=[{"name": "a", "share": 0.5, "failureBudget": 0},
                                           {"name": "b", "failureBudget": 0}])
    assert fleet.promotion().run().result == "done"
    fleet.acquired().mark_held("carol")
    state = fleet.doc("state")
    assert (state["phase"], state["reason"], state["wave"], state["late"]) == ("halted", "held by carol", 1, [])
    last = fleet.doc("history")["promotions"][-1]
    assert (last["result"], last["wave"], last["reason"]) == ("halted", "hold", "held by carol")
    fleet.tags.write_doc(STATE, "state", {"release": "r1", "wave": 0, "phase": "done"})
    fleet.acquired().mark_held("carol")
    assert fleet.doc("state") == {"release": "r1", "wave": 0, "phase": "done"}


def test_history_keeps_the_newest_promotions_only(tmp_path):
    fleet = Fleet(tmp_path, count=1)
    old = [{"release": f"r0-{i}", "result": "done", "wave": "", "reason": ""} for i in range(HISTORY_KEPT)]
    fleet.tags.write_doc(STATE, "history", {"promotions": old})
    assert fleet.promotion().run().result == "done"
    kept = fleet.doc("history")["promotions"]
    assert len(kept) == HISTORY_KEPT and kept[0] == old[1] and kept[-1]["release"] == "r2"


def test_the_wall_clock_is_the_systems():
    clock = WallClock()
    assert abs(clock.now() - time.time()) < 60
    clock.sleep(0)


# what each outcome carries, and the edges the mutation run found unpinned
def _outcome_of(fleet, outcome, result):
    assert (outcome.env, outcome.release, outcome.result) == (ENV, "r2", result)
    assert [(w.name, w.sites) for w in outcome.waves] == [(w.name, len(w.sites)) for w in fleet.plan.waves]
    return outcome


def test_every_outcome_names_its_env_release_and_waves(tmp_path):
    waves = [{"name": "first", "share": 0.5, "failureBudget": 0}, {"name": "second", "failureBudget": 0,
                                                                    "approval": True}]
    fleet = Fleet(tmp_path, count=4, waves=waves, soak="5m")
    _outcome_of(fleet, fleet.promotion().run(), "waiting")
    control.approve(fleet.tags, ENV, "r2", "second")
    assert _outcome_of(fleet, fleet.promotion().run(), "done").late_reverted == []  # not None
    assert _outcome_of(fleet, fleet.promotion().run(), "done").late_reverted == []  # the re-run's watch
    (tmp_path / "halted").mkdir()
    fleet = Fleet(tmp_path / "halted", count=4, waves=waves[:1] + [{"name": "second", "failureBudget": 0}])
    fleet.broken = {"site-0002"}
    assert _outcome_of(fleet, fleet.promotion().run(), "halted").late_reverted == []
    again = _outcome_of(fleet, fleet.promotion().run(), "halted")  # resumed from the saved halt
    assert again.polls_to_halt == 0 and again.halted_wave == "second"


def test_polls_to_halt_counts_a_failure_seen_at_the_first_poll(tmp_path):
    fleet = Fleet(tmp_path, count=4, waves=[{"name": "all", "failureBudget": 1}])
    fleet.broken = {"site-0000", "site-0001"}
    fleet.tags.write_doc(STATE, "state", {"release": "r2", "wave": 0, "phase": "rolling", "late": [],
                                          "moved": ["site-0000"], "wave_started": T0, "soak_started": None})
    fleet.tags.put(fleet.repo("site-0000"), flux.LIVE_TAG, art_manifest(fleet, "site-0000", "r2"))
    fleet.report()  # it failed on the release before this run
    outcome = fleet.promotion().run()
    # poll 0: site-0000's failure is within the budget, site-0001 moves; poll 1: it failed too
    assert outcome.reason == "2 sites failed on the release, over the budget of 1: site-0000, site-0001"
    assert outcome.polls_to_halt == 1  # was 0: `first_failure or poll` took a failure at poll 0 for none


def test_the_deadline_halts_at_the_poll_that_reaches_it(tmp_path):
    fleet = Fleet(tmp_path, count=2, waves=[{"name": "all", "failureBudget": 0}], offlineDeadline="30m")
    fleet.silent = {"site-0000"}
    outcome = fleet.promotion().run()
    assert outcome.result == "halted" and outcome.polls_to_halt == 0  # no failure to count from
    assert fleet.t == T0 + LOCK_SETTLE_S + 30 * 60  # wave_started + deadline, not a poll later


def test_a_halt_keeps_the_late_sites_and_those_moved_back_in_its_outcome_and_history(tmp_path):
    waves = [{"name": "first", "share": 0.5, "failureBudget": 0, "minHealthy": 1},
             {"name": "rest", "failureBudget": 0}]
    fleet = Fleet(tmp_path, count=4, waves=waves, soak="5m", offlineAfter="10m")
    fleet.offline, fleet.broken = {"site-0001"}, {"site-0002"}
    fleet.t += 11 * 60
    fleet.tags.write_doc(STATE, "state", {"release": "r2", "wave": 0, "phase": "rolling", "late": [],
                                          "moved": [], "wave_started": None, "soak_started": None,
                                          "late_reverted": ["site-0009"]})
    outcome = fleet.promotion().run()
    assert outcome.result == "halted" and outcome.late == ["site-0001"] and outcome.late_reverted == ["site-0009"]
    assert fleet.doc("history")["promotions"][-1]["late"] == ["site-0001"]
    assert fleet.doc("history")["promotions"][-1]["wave"] == "rest"


def test_a_done_promotion_reports_the_late_sites_moved_back_before(tmp_path):
    fleet = Fleet(tmp_path, count=2)
    fleet.tags.write_doc(STATE, "state", {"release": "r2", "wave": 0, "phase": "rolling", "late": [],
                                          "moved": [], "wave_started": None, "soak_started": None,
                                          "late_reverted": ["site-0009"]})
    assert fleet.promotion().run().late_reverted == ["site-0009"]


def test_late_failures_move_back_only_late_sites_not_healthy_and_add_to_those_moved_back_before(tmp_path):
    fleet = Fleet(tmp_path, count=4, waves=[{"name": "all", "failureBudget": 3, "minHealthy": 2}])
    fleet.broken = {"site-0002", "site-0003"}
    assert fleet.promotion().run().result == "done"
    fleet.tags.write_doc(STATE, "state", fleet.doc("state") | {
        "late": ["site-0001", "site-0002", "site-0003"], "late_reverted": ["site-0009"]})
    watched = fleet.promotion().run()
    assert watched.reason == "late sites failed on the release: site-0002, site-0003; 2 late sites moved back"
    assert watched.late_reverted == ["site-0002", "site-0003", "site-0009"]
    assert fleet.on("r2") == ["site-0000", "site-0001"]  # the healthy late site keeps the release


def test_a_hold_clears_the_late_sites(tmp_path):
    fleet = Fleet(tmp_path, count=2)
    fleet.tags.write_doc(STATE, "state", {"release": "r2", "wave": 0, "phase": "soaking", "late": ["site-0001"]})
    fleet.acquired().mark_held("dan")
    assert fleet.doc("state")["late"] == []


def test_a_promotion_given_no_sites_windows_treats_every_site_as_open(tmp_path):
    fleet = Fleet(tmp_path, count=2)
    promotion = Promotion(fleet.plan, "r2", fleet.tags, fleet.statuses, fleet, "run-1", log=lambda m: None)
    assert promotion.run().result == "done" and fleet.on("r2") == ["site-0000", "site-0001"]


def test_runs_without_a_run_id_get_their_own(tmp_path):
    fleet = Fleet(tmp_path, count=1)
    first, second = (Promotion(fleet.plan, "r2", fleet.tags, fleet.statuses, fleet) for _ in range(2))
    assert first.run_id != second.run_id and len(first.run_id) == 12


class Pusher:
    """What RegistryTags asks of fleet.artifact.Pusher, kept in memory."""

    def __init__(self):
        self.blobs, self.manifests = {}, {}

    def push_blob(self, repository, blob):
        self.blobs[blob.digest] = blob

    def put_manifest(self, repository, reference, manifest):
        self.manifests[(repository, reference)] = manifest


def test_a_document_is_a_manifest_of_its_sorted_json_typed_as_the_kits_state():
    from fleet.promote import STATE_TYPE, RegistryTags
    import json
    pusher = Pusher()
    RegistryTags(pusher).write_doc(STATE, "lock", {"holder": "a", "expires": 1})
    first = pusher.manifests[(STATE, "lock")]
    RegistryTags(pusher).write_doc(STATE, "lock", {"expires": 1, "holder": "a"})
    manifest = json.loads(pusher.manifests[(STATE, "lock")])
    assert pusher.manifests[(STATE, "lock")] == first  # the same document, the same digest
    assert manifest["config"]["mediaType"] == STATE_TYPE and manifest["annotations"] == {}
    assert pusher.blobs[manifest["config"]["digest"]].data == b'{"expires": 1, "holder": "a"}'
