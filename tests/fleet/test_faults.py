"""Promotions that survive faults: killed after each of its writes and re-run, the registry stopped in the
middle, two promotions of one env started together."""
import threading

import pytest

from common.oci import RegistryError
from fleet.promote import Promotion, PromotionError, WallClock
from tests.fleet.test_rollout import World


class Killed(BaseException):
    """The pipeline agent killed: nothing after it runs, not even `finally` blocks' registry writes."""


class KillAfter:
    """The registry operations of a promotion, with the process killed after `writes` writes."""

    def __init__(self, tags, writes: int):
        self.tags, self.left, self.dead = tags, writes, False

    def _write(self):
        if self.dead or self.left == 0:
            self.dead = True
            raise Killed()
        self.left -= 1

    def get(self, *args):
        if self.dead:
            raise Killed()
        return self.tags.get(*args)

    def read_doc(self, *args):
        if self.dead:
            raise Killed()
        return self.tags.read_doc(*args)

    def put(self, *args):
        self._write()
        self.tags.put(*args)

    def write_doc(self, *args):
        self._write()
        self.tags.write_doc(*args)


def _count_writes(world) -> int:
    probe = KillAfter(world.tags, 10 ** 6)
    assert world.promotion(tags=probe).run().result == "done"
    return 10 ** 6 - probe.left


def test_killed_after_each_write_a_rerun_finishes_and_no_site_leaves_the_two_releases(registry, tmp_path):
    small = dict(waves=[{"name": "rest", "failureBudget": 0}], soak="5m", offlineDeadline="1h")
    total = _count_writes(World(registry, tmp_path / "probe", count=4, **small))
    assert total >= 10
    for n in range(total):
        world = World(registry, tmp_path / f"kill{n}", count=4, **small)
        with pytest.raises(Killed):
            world.promotion(tags=KillAfter(world.tags, n)).run()
        assert world.on("r1") | world.on("r2") == {s.name for s in world.sites}
        assert world.promotion().run().result == "done"  # the pipeline re-runs the same run
        assert world.on("r2") == {s.name for s in world.sites}
        world.never_left_the_two_releases()


def test_killed_while_halting_a_rerun_finishes_moving_the_wave_back(registry, tmp_path):
    plan = dict(waves=[{"name": "rest", "failureBudget": 0}], soak="5m", offlineDeadline="1h")
    for n in range(100):
        world = World(registry, tmp_path / f"kill{n}", count=4, broken=lambda s: True, **plan)
        killer = KillAfter(world.tags, n)
        try:
            assert world.promotion(tags=killer).run().result == "halted"
            break  # every kill point of the halt was tried
        except Killed:
            pass
        assert world.promotion().run().result == "halted"
        assert world.on("r1") == {s.name for s in world.sites}
        world.never_left_the_two_releases()
    assert n >= 5


def test_a_killed_run_holds_the_lock_against_another_run_until_it_expires(registry, tmp_path):
    world = World(registry, tmp_path, count=3, waves=[{"name": "rest", "failureBudget": 0}])
    with pytest.raises(Killed):
        world.promotion(tags=KillAfter(world.tags, 3)).run()
    with pytest.raises(PromotionError, match=r"is being promoted by run run-1 \(release r2\).*re-run that run"):
        world.promotion(run_id="run-2").run()
    world.fleet.advance(world.fleet.now() + 2 * 3600)  # the lease (1h) ran out
    assert world.promotion(run_id="run-2").run().result == "done"


def test_the_registry_stopped_mid_promotion_then_the_rerun_resumes(registry, tmp_path):
    world = World(registry, tmp_path, count=8)
    stops = {"writes": 0}

    class StopRegistry:
        def __getattr__(self, name):
            return getattr(world.tags, name)

        def write_doc(self, *args):
            stops["writes"] += 1
            if stops["writes"] == 6:  # the canary done, a wave under way
                registry.stop()
            world.tags.write_doc(*args)

    try:
        with pytest.raises(RegistryError, match="failed"):
            world.promotion(tags=StopRegistry()).run()
        world.fleet.advance(world.fleet.now() + 600)  # sites cannot reach it either; they keep what they run
    finally:
        registry.start()
    assert world.on("r1") | world.on("r2") == {s.name for s in world.sites}
    assert world.promotion().run().result == "done"
    assert world.on("r2") == {s.name for s in world.sites}
    world.never_left_the_two_releases()


def test_two_promotions_started_together_one_goes_on_the_other_stops(registry, tmp_path):
    world = World(registry, tmp_path, count=3)
    results = {}

    def take(run_id):
        promotion = Promotion(world.plan, "r2", world.tags, world.fleet.statuses, WallClock(), run_id)
        try:
            promotion.acquire()
            results[run_id] = "holds"
        except PromotionError as err:
            results[run_id] = str(err)

    threads = [threading.Thread(target=take, args=(f"run-{i}",)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()).count("holds") == 1
    loser = next(v for v in results.values() if v != "holds")
    assert f"{world.env} is being promoted by run" in loser and "wait for it" in loser


def test_a_long_wave_keeps_its_lock_renewed_so_no_other_run_takes_it(registry, tmp_path):
    world = World(registry, tmp_path, count=4, offlineDeadline="5h", waves=[{"name": "rest", "failureBudget": 0}],
                  sim=lambda s, release: {"stuck": {release}} if s.name == "site-0003" else {})
    refusals, sleep = [], world.fleet.sleep

    def sleep_then_another_run_tries(seconds):  # while the first run waits hours for a stuck site
        sleep(seconds)
        if int(world.fleet.now()) % 7200 < seconds:
            with pytest.raises(PromotionError) as refused:
                world.promotion(run_id="run-2").acquire()
            refusals.append(str(refused.value))

    world.fleet.sleep = sleep_then_another_run_tries
    outcome = world.promotion().run()
    assert outcome.result == "halted" and "did not report the release: site-0003" in outcome.reason
    assert len(refusals) >= 2 and all("is being promoted by run run-1" in r for r in refusals)


def test_two_processes_of_one_run_id_never_both_hold_the_lock(registry, tmp_path):
    world = World(registry, tmp_path, count=3)
    results = []

    def take():
        try:
            Promotion(world.plan, "r2", world.tags, world.fleet.statuses, WallClock(), "build-7").acquire()
            results.append("holds")
        except PromotionError as err:
            results.append(str(err))

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("holds") == 1 and "is being promoted by run build-7" in "".join(results)


def test_the_lease_never_lapses_while_tags_move_through_a_slow_registry(registry, tmp_path):
    world = World(registry, tmp_path, count=12, canaries=[], waves=[{"name": "all", "failureBudget": 11, "minHealthy": 4}],
                  offline={f"site-{i:04d}": [(0, 10 ** 12)] for i in range(4, 12)})
    lapsed = []

    class SlowRegistry:
        def __getattr__(self, name):
            return getattr(world.tags, name)

        def put(self, *args):
            world.fleet.advance(world.fleet.now() + 300)  # five minutes a tag
            lock = world.tags.read_doc(f"fleet-state/{world.env}", "lock")
            if lock["expires"] <= world.fleet.now():
                lapsed.append(world.fleet.now())
            world.tags.put(*args)

    assert world.promotion(tags=SlowRegistry()).run().result == "done"  # 8 offline sites' tags move at the end
    assert lapsed == []
