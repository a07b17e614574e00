"""A promotion: one release of one env moved wave by wave onto the sites' `live` tags, halted and the failed
wave moved back when its failures exceed the budget.

Everything a re-run needs is in the registry itself, in repository `fleet-state/<env>`: tag `state` (which
release, which wave, which phase, when the wave and its soak began) and tag `lock` (who promotes, until
when). Before a site's `live` tag moves, its current digest is kept as tag `pre-<release>` (written once), so
a site is only ever on its previous digest or the new release, and a revert after any crash knows where to go.

Each wave starts with a probe: budget + 1 of its sites that are online. Only when the probe has reported
the release healthy do the rest of the wave's tags move, so a release that breaks a wave reaches at most
budget + 1 of its sites before the halt.

Registries have no compare-and-swap on tags (a PUT of a tag is last-writer-wins), so the lock is taken by
writing it, waiting LOCK_SETTLE_S and reading it back: of two promotions started together the later write
wins and the other stops. The pipeline template also serialises runs per environment (lockBehavior).
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

from fleet import flux
from fleet.artifact import Blob, Pusher, _manifest
from fleet.plan import Plan, Wave
from fleet.status import SiteStatus, effective

STATE_TYPE = "application/vnd.mlops-edge-kit.promotion.v1+json"
LOCK_SETTLE_S = 2.0
LOCK_LEASE_S = 3600.0


class PromotionError(Exception):
    """The promotion cannot go on (held by another run, another release unfinished, registry refused)."""


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class StatusSource(Protocol):
    def read(self, env: str) -> dict[str, SiteStatus]: ...


class WallClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class Tags(Protocol):
    """The registry operations a promotion needs (tags of manifests, and small JSON documents)."""
    def get(self, repository: str, reference: str) -> tuple[str, bytes] | None: ...
    def put(self, repository: str, tag: str, manifest: bytes) -> None: ...
    def read_doc(self, repository: str, tag: str) -> dict | None: ...
    def write_doc(self, repository: str, tag: str, doc: dict) -> None: ...


class RegistryTags:
    """Tags over the kit's registry client; a document is a manifest whose config blob is the JSON."""

    def __init__(self, pusher: Pusher):
        self.pusher = pusher

    def get(self, repository, reference):
        return self.pusher.manifest(repository, reference)

    def put(self, repository, tag, manifest):
        self.pusher.put_manifest(repository, tag, manifest)

    def read_doc(self, repository, tag):
        found = self.pusher.manifest(repository, tag)
        if found is None:
            return None
        config = json.loads(found[1])["config"]
        return json.loads(self.pusher.blob(repository, config["digest"]))

    def write_doc(self, repository, tag, doc):
        blob = Blob(STATE_TYPE, json.dumps(doc, sort_keys=True).encode())
        self.pusher.push_blob(repository, blob)
        self.pusher.put_manifest(repository, tag, _manifest(blob, (), {}))


@dataclass
class WaveCount:
    name: str
    sites: int
    healthy: int = 0
    failed: int = 0
    progressing: int = 0
    offline: int = 0
    failed_sites: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    env: str
    release: str
    result: str  # done | halted
    waves: list[WaveCount]
    halted_wave: str = ""
    polls_to_halt: int = 0  # polls from the first failure report seen to the halt


class Promotion:
    def __init__(self, plan: Plan, release: str, tags: Tags, statuses: StatusSource, clock: Clock | None = None,
                 run_id: str = "", log=print):
        self.plan, self.release, self.tags, self.statuses = plan, release, tags, statuses
        self.clock = clock or WallClock()
        self.run_id = run_id or secrets.token_hex(6)
        self.state_repo = f"fleet-state/{plan.env}"
        self.log = log
        self._manifests: dict[str, tuple[str, bytes]] = {}
        self._renewed = 0.0

    def repo(self, site: str) -> str:
        return flux.repository_path(self.plan.env, site)

    # the lock
    def acquire(self) -> None:
        held = self.tags.read_doc(self.state_repo, "lock")
        if self._held_by_other(held):
            raise PromotionError(self._held_message(held))
        self._write_lock()
        self.clock.sleep(LOCK_SETTLE_S)
        held = self.tags.read_doc(self.state_repo, "lock")
        if not held or held.get("holder") != self.run_id:
            raise PromotionError(self._held_message(held or {}))

    def _held_by_other(self, held: dict | None) -> bool:
        return bool(held and held.get("holder") and held["holder"] != self.run_id
                    and held.get("expires", 0) > self.clock.now())

    def _held_message(self, held: dict) -> str:
        return (f"{self.plan.env} is being promoted by run {held.get('holder')} (release {held.get('release')}); "
                f"its lock expires at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(held.get('expires', 0)))}: "
                "wait for it, or re-run that run")

    def _write_lock(self) -> None:
        self._renewed = self.clock.now()
        self.tags.write_doc(self.state_repo, "lock", {"holder": self.run_id, "release": self.release,
                                                       "expires": self._renewed + LOCK_LEASE_S})

    def release_lock(self) -> None:
        held = self.tags.read_doc(self.state_repo, "lock")
        if held and held.get("holder") == self.run_id:
            self.tags.write_doc(self.state_repo, "lock", {"holder": "", "release": "", "expires": 0})

    # the state
    def _save(self, state: dict) -> None:
        self.tags.write_doc(self.state_repo, "state", state)
        self._renew()

    def _renew(self) -> None:
        """Extend the lease every quarter of it; stop if another run took the lock meanwhile."""
        if self.clock.now() - self._renewed <= LOCK_LEASE_S / 4:
            return
        held = self.tags.read_doc(self.state_repo, "lock") or {}
        if held.get("holder") != self.run_id:
            raise PromotionError(f"{self.plan.env}: this run lost its lock: {self._held_message(held)}")
        self._write_lock()

    def _start_state(self) -> dict:
        state = self.tags.read_doc(self.state_repo, "state")
        if state and state.get("release") != self.release and state.get("phase") not in ("done", "halted"):
            raise PromotionError(f"{self.plan.env}: the promotion of release {state['release']} is unfinished "
                                 f"(wave {state['wave']}, {state['phase']}): re-run it first")
        if state and state.get("release") == self.release:
            return state
        return {"release": self.release, "wave": 0, "phase": "tagging", "wave_started": None, "soak_started": None}

    # the sites
    def _release_manifest(self, site: str) -> tuple[str, bytes]:
        if site not in self._manifests:
            found = self.tags.get(self.repo(site), self.release)
            if found is None:
                raise PromotionError(f"{self.repo(site)}: no artifact tagged {self.release}: run fleet.release first")
            self._manifests[site] = found
        return self._manifests[site]

    def move(self, site: str) -> None:
        """live -> the release, keeping what live was as pre-<release> (written once)."""
        digest, manifest = self._release_manifest(site)
        live = self.tags.get(self.repo(site), flux.LIVE_TAG)
        if live and live[0] == digest:
            return
        if live and self.tags.get(self.repo(site), f"pre-{self.release}") is None:
            self.tags.put(self.repo(site), f"pre-{self.release}", live[1])
        self.tags.put(self.repo(site), flux.LIVE_TAG, manifest)

    def revert(self, site: str) -> None:
        """live -> pre-<release>, when live is on the release."""
        live = self.tags.get(self.repo(site), flux.LIVE_TAG)
        if not live or live[0] != self._release_manifest(site)[0]:
            return
        previous = self.tags.get(self.repo(site), f"pre-{self.release}")
        if previous is None:
            self.log(f"{site}: no previous release to move back to (its first release); left on {self.release}")
            return
        self.tags.put(self.repo(site), flux.LIVE_TAG, previous[1])

    def probe(self, wave: Wave) -> list[str]:
        """budget + 1 sites of the wave, online ones first."""
        reports, now = self.statuses.read(self.plan.env), self.clock.now()
        online = [s for s in wave.sites if effective(reports.get(s), now, self.plan.offline_after_s) != "offline"]
        ordered = online + [s for s in wave.sites if s not in online]
        return ordered[:wave.budget + 1]

    # the waves
    def count(self, wave: Wave, now: float) -> WaveCount:
        reports = self.statuses.read(self.plan.env)
        counted = WaveCount(wave.name, len(wave.sites))
        for site in wave.sites:
            status = reports.get(site)
            state = effective(status, now, self.plan.offline_after_s)
            on_release = status is not None and status.digest == self._release_manifest(site)[0]
            if state == "offline":
                counted.offline += 1
            elif on_release and state == "healthy":
                counted.healthy += 1
            elif on_release and state == "failed":
                counted.failed += 1
                counted.failed_sites.append(site)
            else:
                counted.progressing += 1
        return counted

    def observe(self, wave: Wave, state: dict, soak: bool = True) -> tuple[WaveCount, int | None]:
        """Poll until the wave settles (and soaks) (None), or its failures exceed the budget (polls since the
        first failure)."""
        first_failure_poll, poll = None, 0
        while True:
            now = self.clock.now()
            counted = self.count(wave, now)
            if counted.failed and first_failure_poll is None:
                first_failure_poll = poll
            if counted.failed > wave.budget:
                return counted, poll - first_failure_poll
            settled = counted.healthy + counted.failed == counted.sites
            if settled or now >= state["wave_started"] + self.plan.deadline_s:
                if not soak:
                    return counted, None
                if state["soak_started"] is None:
                    state.update(soak_started=now, phase="soaking")
                    self._save(state)
                if now - state["soak_started"] >= self.plan.soak_s:
                    return counted, None
            self.clock.sleep(self.plan.poll_s)
            self._renew()
            poll += 1

    def run(self) -> Outcome:
        """Promote (or resume), wave by wave; the lock is held throughout and released at the end."""
        self.acquire()
        try:
            return self._run()
        finally:
            self.release_lock()

    def _run(self) -> Outcome:
        state = self._start_state()
        waves = self.plan.waves
        counts = [WaveCount(w.name, len(w.sites)) for w in waves]
        if state["phase"] in ("reverting", "halted"):
            return self._halt(state, waves[state["wave"]], counts, 0)
        while state["wave"] < len(waves) and state["phase"] != "done":
            wave = waves[state["wave"]]
            if state["phase"] == "tagging":
                state.update(wave_started=state["wave_started"] or self.clock.now(), probe=self.probe(wave))
                self._save(state)
                for site in state["probe"]:
                    self.move(site)
                state["phase"] = "probing"
                self._save(state)
            if state["phase"] == "probing":
                probe = replace(wave, sites=tuple(state["probe"]))
                counts[state["wave"]], polls = self.observe(probe, state, soak=False)
                if polls is not None:
                    return self._halt(state, wave, counts, polls)
                state["phase"] = "widening"
                self._save(state)
            if state["phase"] == "widening":
                for site in wave.sites:
                    self.move(site)
                state["phase"] = "observing"
                self._save(state)
            counts[state["wave"]], polls = self.observe(wave, state)
            if polls is not None:
                return self._halt(state, wave, counts, polls)
            self.log(f"wave {wave.name}: {counts[state['wave']].healthy}/{len(wave.sites)} healthy, "
                     f"{counts[state['wave']].offline} offline")
            state.update(wave=state["wave"] + 1, phase="tagging", wave_started=None, soak_started=None)
            self._save(state)
        state["phase"] = "done"
        self._save(state)
        return Outcome(self.plan.env, self.release, "done", counts)

    def _halt(self, state: dict, wave: Wave, counts: list[WaveCount], polls: int) -> Outcome:
        state["phase"] = "reverting"
        self._save(state)
        for site in wave.sites:
            self.revert(site)
        state["phase"] = "halted"
        self._save(state)
        self.log(f"wave {wave.name}: failures over its budget of {wave.budget}: halted, moved back")
        return Outcome(self.plan.env, self.release, "halted", counts, wave.name, polls)
