"""A simulated fleet in virtual time, for the promotion's logic: each site behaves as its Flux would.

A site polls its `live` tag every POLL_S (the input providers' reconcileEvery) with jitter: the scheduled
provider only inside its maintenance windows (judged by tests/fleet/cronoracle.py, not the kit's parser), the
unscheduled ones (live and pin) at any time; it runs the digest fleet.flux's ResourceSet picks from the three
(`target`). When that changed it
applies it (progressing), then reports healthy or failed (the Kustomization's health checks) through events
shaped like the notification-controller's generic webhook payload, parsed by the kit's own fleet.status.from_event. Between changes it reports every
REPORT_S (the Kustomization interval). Offline sites neither poll nor report until they reconnect.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone

from common.oci import RegistryError
from fleet import flux
from fleet.status import SiteStatus, from_event, merge
from tests.fleet import cronoracle

POLL_S = 300.0     # fluxcd.controlplane.io/reconcileEvery of the input provider (fleet.flux.WINDOW_POLL)
REPORT_S = 600.0   # the Kustomization's interval
APPLY_S = 90.0     # fetch, apply and health checks


class MemoryStatuses:
    """The latest status per site (what fleet.status.StatusStore keeps on disk)."""

    def __init__(self):
        self.latest: dict[str, dict[str, SiteStatus]] = {}

    def record(self, env: str, status: SiteStatus) -> None:
        sites = self.latest.setdefault(env, {})
        sites[status.site] = merge(sites.get(status.site), status)

    def read(self, env: str) -> dict[str, SiteStatus]:
        return dict(self.latest.get(env, {}))


class _Manifests(dict):
    """(repository, reference) -> (digest, manifest bytes), keeping which blobs each repository holds: a manifest
    stored in a repository means its blobs were pushed there (a registry refuses it otherwise)."""

    def __init__(self):
        super().__init__()
        self.blobs: dict[str, set[str]] = {}

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.blobs.setdefault(key[0], set()).update(referenced(value[1]))


def referenced(manifest: bytes) -> list[str]:
    """The digests of the blobs an image manifest names (config and layers)."""
    body = json.loads(manifest)
    return [d["digest"] for d in (body.get("config"), *body.get("layers", [])) if d]


class MemoryTags:
    """Tags as a distribution registry keeps them: manifests by tag and by digest, each tag last-writer-wins; it
    refuses what the registry refuses (tests/fleet/test_registry_parity.py holds it to the real one): a write
    without push access (HTTP 401) and a manifest whose blobs the repository lacks (HTTP 400); a missing tag is
    None. Counts the requests the registry would serve (one per call), by virtual minute."""

    def __init__(self, clock, can_push: bool = True):
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = _Manifests()
        self.docs: dict[tuple[str, str], dict] = {}
        self.clock = clock
        self.can_push = can_push
        self.per_minute: dict[int, int] = {}

    def reader(self) -> "MemoryTags":
        """The same registry through a credential that may pull only."""
        view = MemoryTags(self.clock, can_push=False)
        view.manifests, view.docs, view.per_minute = self.manifests, self.docs, self.per_minute
        return view

    def _count(self) -> None:
        minute = int(self.clock.now() // 60)
        self.per_minute[minute] = self.per_minute.get(minute, 0) + 1

    def _push_access(self, repository: str, reference: str) -> None:
        if not self.can_push:
            raise RegistryError(f"PUT {repository}/manifests/{reference}: HTTP 401 Unauthorized", 401)

    def get(self, repository, reference):
        self._count()
        return self.manifests.get((repository, reference))

    def put(self, repository, tag, manifest):
        self._count()
        self._push_access(repository, tag)
        if not set(referenced(manifest)) <= self.manifests.blobs.get(repository, set()):
            raise RegistryError(f"PUT {repository}/manifests/{tag}: HTTP 400 Bad Request (blob unknown)", 400)
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.manifests[(repository, tag)] = self.manifests[(repository, digest)] = (digest, manifest)

    def push(self, repository: str, artifact, tags: tuple[str, ...] = ()) -> str:
        """What fleet.artifact.Pusher.push does: blobs, then the manifest by digest and under each tag."""
        self._push_access(repository, artifact.digest)
        self.manifests.blobs.setdefault(repository, set()).update(b.digest for b in (artifact.config, *artifact.layers))
        for reference in (artifact.digest, *tags):
            self.put(repository, reference, artifact.manifest)
        return artifact.digest

    def read_doc(self, repository, tag):
        self._count()
        return self.docs.get((repository, tag))

    def write_doc(self, repository, tag, doc):
        self._count()
        self._push_access(repository, tag)
        self.docs[(repository, tag)] = dict(doc)


@dataclass
class SimSite:
    site: object                     # fleet.config.Site
    broken: set = field(default_factory=set)            # digests this site fails on
    offline: list = field(default_factory=list)         # [(from_s, to_s)] virtual seconds
    applied: str = ""
    scheduled: str = ""             # what its scheduled provider resolved in its last window (default: applied)
    state: str = "healthy"
    history: list = field(default_factory=list)         # every digest it applied
    next_open: float = 0.0
    silent: bool = False                                # its events never reach the receiver
    unfetchable: set = field(default_factory=set)       # digests its source-controller cannot pull
    stuck: set = field(default_factory=set)             # digests it never applies, with no event sent (a
    #                                                     ResourceSet error: no Alert kind selects ResourceSets)

    def online(self, t: float) -> bool:
        return not any(start <= t < end for start, end in self.offline)

    def target(self, live: str, pin: str) -> str:
        """The digest the site's ResourceSet pins (fleet.flux.DIGEST_TEMPLATE; tests/fleet/test_resourceset.py
        holds the template to this through the operator's own code)."""
        if self.scheduled and self.scheduled != live:
            return pin or self.scheduled
        return live or self.scheduled


REPORT_REASONS = {"healthy": "ReconciliationSucceeded", "failed": "HealthCheckFailed", "progressing": "Progressing"}


def _event(env: str, site: str, kind: str, severity: str, reason: str, message: str, metadata: dict,
           t: float) -> dict:
    controller = {"Kustomization": "kustomize-controller", "OCIRepository": "source-controller"}[kind]
    return {"involvedObject": {"kind": kind, "name": "site", "namespace": "flux-system"},
            "severity": severity, "reason": reason, "message": message, "reportingController": controller,
            "timestamp": datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z"),
            "metadata": metadata | {"site": site, "env": env}}


def report_event(env: str, site: str, state: str, digest: str, t: float) -> dict:
    """kustomize-controller's event of a site's applied digest (its revision is the source's)."""
    return _event(env, site, "Kustomization", "error" if state == "failed" else "info", REPORT_REASONS[state],
                  state, {"revision": f"{flux.LIVE_TAG}@{digest}"}, t)


def fetch_failed_event(env: str, site: str, digest: str, t: float) -> dict:
    """source-controller's error event of a pull that failed: no revision, the pinned digest as `digest` (the
    OCIRepository's event.toolkit.fluxcd.io/digest annotation), the registry's error naming a layer; both
    calibrated on the real controllers (tests/realapi/test_fleet_flux.py)."""
    repo = flux.repository_path(env, site)
    return _event(env, site, "OCIRepository", "error", "OCIArtifactLayerOperationFailed",
                  f"failed to extract the first layer from artifact: GET https://registry.test/v2/{repo}/blobs/"
                  f"sha256:{'0' * 64}: BLOB_UNKNOWN: blob unknown to registry", {"digest": digest}, t)


class SimFleet:
    """Sites, their registry (Tags) and their reports, driven by a virtual clock the promotion sleeps on."""

    def __init__(self, env: str, sites: list[SimSite], tags, statuses, start: datetime, seed: int = 7):
        self.env, self.tags, self.statuses = env, tags, statuses
        self.epoch = start.timestamp()
        self.t = self.epoch
        self.rng = random.Random(seed)
        self.sites = {s.site.name: s for s in sites}
        for sim in sites:
            sim.scheduled = sim.scheduled or sim.applied  # a site on a release had a window for it
        self.queue: list[tuple[float, int, str, str]] = []
        self._n = 0
        for name in self.sites:
            self._at(self.t + self.rng.uniform(0, POLL_S), "poll", name)
            self._at(self.t + self.rng.uniform(0, REPORT_S), "report", name)

    # the Clock protocol
    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.advance(self.t + seconds)

    def keep(self, names: set[str]) -> None:
        """From now on only these sites act (the others are settled; saves the registry their polls)."""
        self.queue = [event for event in self.queue if event[3] in names]
        heapq.heapify(self.queue)

    def _at(self, when: float, what: str, name: str) -> None:
        self._n += 1
        heapq.heappush(self.queue, (when, self._n, what, name))

    def advance(self, until: float) -> None:
        while self.queue and self.queue[0][0] <= until:
            when, _, what, name = heapq.heappop(self.queue)
            self.t = when
            getattr(self, f"_{what}")(self.sites[name])
        self.t = until

    def _in_window(self, sim: SimSite) -> bool:
        if not sim.site.windows:
            return True
        if self.t < sim.next_open:
            return False
        now = datetime.fromtimestamp(self.t, timezone.utc)  # the oracle's judgement, not the kit's parser
        opening = min(cronoracle.opening(w.cron, w.time_zone, w.duration, now) for w in sim.site.windows)
        sim.next_open = opening.timestamp()
        return opening <= now  # as datetimes: back in float seconds an open window came out after now 4 in 10

    def _poll(self, sim: SimSite) -> None:
        jitter = self.rng.uniform(-0.1, 0.1) * POLL_S
        self._at(self.t + POLL_S + jitter, "poll", sim.site.name)
        if not sim.online(self.t):
            return
        repo = flux.repository_path(self.env, sim.site.name)
        try:
            live = self.tags.get(repo, flux.LIVE_TAG)  # the unscheduled providers
            pin = self.tags.get(repo, flux.PIN_TAG)
            if live and self._in_window(sim):
                sim.scheduled = self.tags.get(repo, flux.LIVE_TAG)[0]  # the scheduled provider
        except RegistryError:
            return  # registry unreachable: Flux retries at its next poll
        digest = sim.target(live[0] if live else "", pin[0] if pin else "")
        if not digest or digest in sim.stuck:
            return
        if digest in sim.unfetchable:
            return self._fetch_failed(sim, digest)  # it keeps running (and reporting) what it applied before
        if digest != sim.applied:
            sim.applied, sim.state = digest, "progressing"
            sim.history.append(digest)
            self._report(sim, reschedule=False)
            self._at(self.t + APPLY_S, "applied", sim.site.name)

    def _fetch_failed(self, sim: SimSite, digest: str) -> None:
        self._send(sim, fetch_failed_event(self.env, sim.site.name, digest, self.t))

    def _applied(self, sim: SimSite) -> None:
        sim.state = "failed" if sim.applied in sim.broken else "healthy"
        self._report(sim, reschedule=False)

    def _report(self, sim: SimSite, reschedule: bool = True) -> None:
        if reschedule:
            self._at(self.t + REPORT_S, "report", sim.site.name)
        if not sim.applied:
            return
        self._send(sim, report_event(self.env, sim.site.name, sim.state, sim.applied, self.t))

    def _send(self, sim: SimSite, event: dict) -> None:
        if sim.online(self.t) and not sim.silent:
            self.statuses.record(self.env, from_event(event))
