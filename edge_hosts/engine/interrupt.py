"""Ctrl-C during a run that changes a site: the first stops it cleanly (no further step starts, the steps in
progress finish, each being check-then-change), a second cuts those off too (their connections closed); either
way the run ends with every host's result, the stopped ones saying where."""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

from edge_hosts.engine.fanout import Engine
from edge_hosts.engine.results import HostResult

STOPPING = ("stopping: no further step starts; the steps in progress finish first (Ctrl-C again to cut them "
            "off)")


def interruptible(engine: Engine, work: Callable[[], list[HostResult]], names: list[str]
                  ) -> tuple[list[HostResult], bool]:
    """Run `work` (which steps through `engine`) in a thread while this one takes Ctrl-C; return its results (or,
    interrupted, every host's as it stands) and whether it was interrupted."""
    outcome: dict = {}
    ended = threading.Event()

    def run() -> None:
        try:
            outcome["results"] = work()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = error
        finally:
            ended.set()

    # SIGINT is blocked while the thread starts (it and the threads it starts keep it blocked): a Ctrl-C then is
    # pending until the loop below takes it, never raised inside Thread.start
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    interrupts = 0
    try:
        threading.Thread(target=run, name="run", daemon=True).start()
    except KeyboardInterrupt:  # taken by a thread started earlier (its SIGINT unblocked) while start() waited
        interrupts = _interrupted(engine, 1)
    # waited for on an Event, never Thread.join: a Ctrl-C inside join() makes CPython 3.11 take the thread for
    # ended while it runs on (threading.py _wait_for_tstate_lock releases the lock the running thread holds)
    while True:
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # here, so a pending Ctrl-C is taken below
            if ended.wait(0.5):
                break
        except KeyboardInterrupt:
            interrupts = _interrupted(engine, interrupts + 1)
    if "error" in outcome and not interrupts:
        raise outcome["error"]
    return (outcome.get("results") if "results" in outcome else engine.results(names)), interrupts > 0


def _interrupted(engine: Engine, count: int) -> int:
    """The run's `count`-th Ctrl-C: the first stops it, a later one cuts the steps in progress off."""
    if count == 1:
        engine.stop("interrupted (Ctrl-C)")
        print(STOPPING, file=sys.stderr, flush=True)
    else:
        engine.cut("interrupted (Ctrl-C)")
    return count
