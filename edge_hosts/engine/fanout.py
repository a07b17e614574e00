"""Step engine: runs named steps on hosts (in parallel where allowed), retries dropped links, records results."""
from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import yaml

from edge_hosts.artifacts.downloads import ArtifactError, ArtifactSource
from edge_hosts.access.hostkeys import HostKeyError
from edge_hosts.inventory.model import Inventory
from edge_hosts.access.kubeconfig import KubeconfigError
from edge_hosts.engine.results import HostResult
from edge_hosts.engine.progress import Progress
from edge_hosts.access.ssh import HostSession, RemoteError, TransportError, redact
from edge_hosts.engine.context import HostContext
from edge_hosts.engine.context import StepError

# ValueError/YAMLError: a host answered with output that does not parse (e.g. a broken kubectl)
STEP_ERRORS = (RemoteError, StepError, ArtifactError, HostKeyError, KubeconfigError, ValueError, yaml.YAMLError)
UPLOAD_PARALLEL = 2  # uploads to a site at a time (its uplink is shared): edge.bootstrap --upload-parallel


class Engine:
    """The hosts of one run, each with one SSH session reused by every step."""

    def __init__(self, inventory: Inventory, names: list[str], parallel: int, progress: Progress,
                 source: ArtifactSource | None = None):
        self.inventory, self.parallel, self.progress = inventory, max(1, parallel), progress
        self.stopping: str | None = None  # why no further step starts (Ctrl-C, the site lock lost)
        self.cut_off = False  # the steps in progress were cut off too (their connections closed)
        self.contexts = {name: HostContext(inventory, inventory.host(name), HostSession(inventory, inventory.host(name)),
                                           source) for name in names}
        self.limit_uploads(UPLOAD_PARALLEL)
        for ctx in self.contexts.values():
            ctx.session.on_attempt = functools.partial(self._attempt, ctx)

    def _attempt(self, ctx: HostContext, attempt: int, attempts: int, seconds_left: float) -> None:
        """A connection attempt shown in the live view: attempt n of m, and the longest the rest can take."""
        self.progress.update(ctx.host.name, ctx.step,
                             f"connecting: attempt {attempt} of {attempts}, up to {seconds_left:.0f} s left")

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        for ctx in self.contexts.values():
            ctx.session.close()

    def limit_uploads(self, slots: int) -> None:
        """At most `slots` uploads at a time over all the site's hosts; the other steps keep `parallel`."""
        shared = threading.BoundedSemaphore(max(1, slots))
        for ctx in self.contexts.values():
            ctx.session.upload_slots = shared

    def add_secrets(self, values: set[str]) -> None:
        """Values no host's output may show (redacted on every session)."""
        for ctx in self.contexts.values():
            ctx.session.secrets.update(values)

    def stop(self, reason: str) -> None:
        """Start no further step on any host (from any thread); the steps in progress finish."""
        self.stopping = self.stopping or reason

    def cut(self, reason: str) -> None:
        """Stop, and end the steps in progress too by closing every connection for good."""
        self.stop(reason)
        self.cut_off = True
        for ctx in self.contexts.values():
            ctx.session.cancel()

    def fail(self, ctx: HostContext, message: str) -> None:
        """The host failed; while the run stops, a failure passed on from another host (no step of its own
        running) or caused by the cut connections is a stop, saying where."""
        if ctx.error is not None:
            return
        if self.stopping and not ctx.in_step:
            self._halt(ctx, None)
            return
        if self.cut_off:  # whatever the step saw, it ended because its connection was cut
            ctx.stopped, message = True, f"interrupted during {ctx.step}: {self.stopping}"
        ctx.error = message
        self.progress.update(ctx.host.name, ctx.step, "stopped" if ctx.stopped else "failed")

    def _halt(self, ctx: HostContext, before: str | None) -> None:
        """The host stops before step `before` (None: the one after its last) as the run stops."""
        if ctx.error is None:
            where = f"before {before}" if before else "before its first step" if ctx.step == "waiting" \
                else f"after {ctx.step}"
            ctx.stopped, ctx.error = True, f"stopped {where}: {self.stopping}"
            self.progress.update(ctx.host.name, before or ctx.step, "stopped")

    def step(self, ctx: HostContext, name: str, action: Callable[..., bool], *args) -> bool:
        """Run one step on a host unless it already failed or the run is stopping; True when it succeeded. A
        dropped link is reconnected (with backoff) and the step, being check-then-change, is run once more."""
        if ctx.failed:
            return False
        if self.stopping:
            self._halt(ctx, name)
            return False
        ctx.step, ctx.in_step = name, True
        self.progress.update(ctx.host.name, name)
        try:
            return self._attempts(ctx, name, action, args)
        finally:
            ctx.in_step = False

    def _attempts(self, ctx: HostContext, name: str, action: Callable[..., bool], args: tuple) -> bool:
        for attempt in (1, 2):
            try:
                if action(ctx, *args) and name not in ctx.changed:
                    ctx.changed.append(name)
                return True
            except TransportError as err:  # connect made all its attempts already: not a second round of them
                if attempt == 2 or action is connect or not self._reconnect(ctx):
                    self.fail(ctx, f"{name}: {err}")
                    return False  # not run again on a host it cannot reach
            except STEP_ERRORS as err:
                self.fail(ctx, f"{name}: {err}")
                return False
            except Exception as err:  # noqa: BLE001 - one host's surprise must not stop the others
                self.fail(ctx, f"{name}: unexpected {type(err).__name__}: {redact(str(err), ctx.session.secrets)}")
                return False
        return False

    def _reconnect(self, ctx: HostContext) -> bool:
        try:
            ctx.session.connect()
            return True
        except (TransportError, *STEP_ERRORS):
            return False

    def each(self, contexts: list[HostContext], work: Callable[[HostContext], None]) -> None:
        """Run work on every host that has not failed, at most `parallel` at a time."""
        live = [ctx for ctx in contexts if not ctx.failed]
        if len(live) <= 1 or self.parallel == 1:
            for ctx in live:
                work(ctx)
            return
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(live))) as pool:
            list(pool.map(work, live))

    def connect_and_probe(self, ctx: HostContext) -> None:
        self.step(ctx, "connect", connect)
        self.step(ctx, "probe", _probe)

    def results(self, names: list[str]) -> list[HostResult]:
        out = []
        for name in names:
            ctx = self.contexts[name]
            status = "stopped" if ctx.stopped else "failed" if ctx.failed else "changed" if ctx.changed else "ok"
            self.progress.update(name, "done", status)
            out.append(HostResult(name, status, list(ctx.changed), ctx.error))
        return out


def connect(ctx: HostContext) -> bool:
    ctx.session.connect()
    return False


def _probe(ctx: HostContext) -> bool:
    ctx.refresh()
    return False
