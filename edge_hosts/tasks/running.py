"""How a task that changes a site runs: under the site's lock (a second run exits 2 naming the holder), with
Ctrl-C stopping it cleanly, and the lock's loss stopping it too."""
from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

from invoke import Exit

if TYPE_CHECKING:
    from edge_hosts.engine.fanout import Engine
    from edge_hosts.inventory.model import Inventory


@contextmanager
def site_lock(inventory: Inventory, task: str) -> Iterator:
    """The site's lock for the `with` block: exit 2 when another run holds it, 1 when it cannot be taken."""
    from edge_hosts.access.sitelock import LockError, SiteBusy, SiteLock

    lock = SiteLock(inventory, task)
    lock.remote.session.on_attempt = functools.partial(_attempt, task, lock.remote.host.name)
    lock.remote.on_wait = lambda dead: print(f"{task}: the site's lock on {lock.remote.host.name} is held for a run "
                                             f"that has ended ({dead.describe()}); waiting for it to be let go",
                                             file=sys.stderr, flush=True)
    try:
        lock.acquire()
    except SiteBusy as err:
        raise Exit(f"{task}: site {inventory.site} is being changed by another run: {err}. Nothing was done; run "
                   "again when it has ended", code=2) from None
    except LockError as err:
        raise Exit(f"{task}: {err}. Nothing was done", code=1) from None
    try:
        yield lock
    finally:
        lock.release()


def _attempt(task: str, host: str, attempt: int, attempts: int, seconds_left: float) -> None:
    """A retried connection for the lock, before the live view starts: shown on stderr from the second on."""
    if attempt > 1:
        print(f"{task}: taking the site's lock on {host}: attempt {attempt} of {attempts}, up to "
              f"{seconds_left:.0f} s left", file=sys.stderr, flush=True)


def run_locked(lock, engine: Engine, work: Callable[[], list], names: list[str]) -> tuple[list, bool]:
    """Run `work` on `engine` interruptibly (engine/interrupt.py), stopping it if the site's lock is lost."""
    from edge_hosts.engine.interrupt import interruptible

    lock.remote.on_lost = engine.stop
    return interruptible(engine, work, names)
