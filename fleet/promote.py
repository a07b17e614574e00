"""A promotion: one release of one env moved wave by wave onto the sites' `live` tags, halted and the failed
wave moved back when its failures exceed the budget.

Everything a re-run needs is in the registry itself, in repository `fleet-state/<env>`: tag `state` (which
release, which wave, which phase, when the wave and its soak began) and tag `lock` (who promotes, until
when). Before a site's `live` tag moves, its current digest is kept as tag `pre-<release>` (written once), so
a site is only ever on its previous digest or the new release, and a revert after any crash knows where to go.

Each wave goes through its gate (fleet/gate.py): at most budget + 1 of its sites run the release without
having reported it healthy, so a release that breaks a wave reaches at most budget + 1 of its sites before the
halt; a wave passes only on enough healthy reports, and halts with the reason otherwise.

A site moved back runs its previous digest at once, outside its window too: tag `pin` is written before
`live` (fleet/flux.py DIGEST_TEMPLATE); a site with no previous release is held (tag hold-<release>: the release
with its workloads stopped). Sites moved while late (offline, window closed) stay in the state until they report:
a late failure, during the promotion or at a re-run after it (watch), moves every late site not yet healthy back.

Registries have no compare-and-swap on tags (a PUT of a tag is last-writer-wins), so the lock is taken by
writing it, waiting LOCK_SETTLE_S and reading it back: of two promotions started together the later write
wins and the other stops. The pipeline template also serialises runs per environment (lockBehavior).
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from fleet import control, flux
from fleet.artifact import Blob, Pusher, _manifest
from fleet.config import Site
from fleet.gate import Verdict, WaveCount, count, decide
from fleet.plan import Plan, Wave, site_opening
from fleet.recall import late as recall
from fleet.status import SiteStatus, effective

STATE_TYPE = "application/vnd.mlops-edge-kit.promotion.v1+json"
LOCK_SETTLE_S = 2.0
LOCK_LEASE_S = 3600.0
HISTORY_KEPT = 50


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
class Outcome:
    env: str
    release: str
    result: str  # done | halted | waiting (for a wave's approval)
    waves: list[WaveCount]
    halted_wave: str = ""
    polls_to_halt: int = 0  # polls from the first failure report seen to the halt
    reason: str = ""        # why it halted
    late: list[str] = field(default_factory=list)  # moved while offline or outside their window: not yet reported
    late_reverted: list[str] = field(default_factory=list)  # late sites moved back after a late failure


class Promotion:
    def __init__(self, plan: Plan, release: str, tags: Tags, statuses: StatusSource, clock: Clock | None = None,
                 run_id: str = "", log=print, sites: dict[str, Site] | None = None):
        self.plan, self.release, self.tags, self.statuses = plan, release, tags, statuses
        self.sites = sites or {}  # their windows: who goes first, and who is late rather than silent
        self.clock = clock or WallClock()
        self.run_id = run_id or secrets.token_hex(6)
        self.process = secrets.token_hex(8)  # two processes of one run id never both hold the lock
        self.state_repo = f"fleet-state/{plan.env}"
        self.log = log
        self._manifests: dict[str, tuple[str, bytes]] = {}
        self._renewed = 0.0
        self._reports: dict[str, SiteStatus] | None = None  # the last poll's, for carrying pins

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
        if not self._mine(held):
            raise PromotionError(self._held_message(held or {}))

    def _mine(self, held: dict | None) -> bool:
        return bool(held and held.get("holder") == self.run_id and held.get("process") == self.process)

    def _held_by_other(self, held: dict | None) -> bool:
        return bool(held and held.get("holder") and held["holder"] != self.run_id
                    and held.get("expires", 0) > self.clock.now())

    def _held_message(self, held: dict) -> str:
        return (f"{self.plan.env} is being promoted by run {held.get('holder')} (release {held.get('release')}); "
                f"its lock expires at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(held.get('expires', 0)))}: "
                "wait for it, or re-run that run")

    def _write_lock(self) -> None:
        self._renewed = self.clock.now()
        self.tags.write_doc(self.state_repo, "lock", {"holder": self.run_id, "process": self.process,
                                                       "release": self.release,
                                                       "expires": self._renewed + LOCK_LEASE_S})

    def release_lock(self) -> None:
        held = self.tags.read_doc(self.state_repo, "lock")
        if self._mine(held):
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
        if not self._mine(held):
            raise PromotionError(f"{self.plan.env}: this run lost its lock: {self._held_message(held)}")
        self._write_lock()

    def _start_state(self) -> dict:
        state = self.tags.read_doc(self.state_repo, "state")
        if state and state.get("release") != self.release and state.get("phase") not in ("done", "halted"):
            raise PromotionError(f"{self.plan.env}: the promotion of release {state['release']} is unfinished "
                                 f"(wave {state['wave']}, {state['phase']}): re-run it first")
        if state and state.get("release") == self.release:
            return state
        return self._wave_state({"release": self.release, "wave": 0, "late": []})

    @staticmethod
    def _wave_state(state: dict) -> dict:
        return state | {"phase": "rolling", "wave_started": None, "soak_started": None, "moved": []}

    # the sites
    def _release_manifest(self, site: str) -> tuple[str, bytes]:
        if site not in self._manifests:
            found = self.tags.get(self.repo(site), self.release)
            if found is None:
                raise PromotionError(f"{self.repo(site)}: no artifact tagged {self.release}: run fleet.release first")
            self._manifests[site] = found
        return self._manifests[site]

    def move(self, site: str) -> None:
        """live -> the release, keeping what live was as pre-<release> (written once); the lease renewed."""
        self._renew()
        digest, manifest = self._release_manifest(site)
        live = self.tags.get(self.repo(site), flux.LIVE_TAG)
        if live and live[0] == digest:
            return
        if live and self.tags.get(self.repo(site), f"pre-{self.release}") is None:
            self.tags.put(self.repo(site), f"pre-{self.release}", live[1])
        if live:
            self._carry_pin(site, live)
        self.tags.put(self.repo(site), flux.LIVE_TAG, manifest)

    def _carry_pin(self, site: str, live: tuple[str, bytes]) -> None:
        if self._reports is None:
            self._reports = self.statuses.read(self.plan.env)
        if recall.pin_to_carry(self, site, live, self._reports):
            self.tags.put(self.repo(site), flux.PIN_TAG, live[1])

    def revert(self, site: str) -> None:
        """live -> pre-<release> (or hold-<release>, its first release), when live is on the release: the pin
        first, so the site runs it at once, whatever its window; the lease renewed."""
        self._renew()
        live = self.tags.get(self.repo(site), flux.LIVE_TAG)
        if not live or live[0] != self._release_manifest(site)[0]:
            return
        back = self.tags.get(self.repo(site), f"pre-{self.release}") \
            or self.tags.get(self.repo(site), flux.HOLD_PREFIX + self.release)
        if back is None:
            self.log(f"{site}: no previous release and no {flux.HOLD_PREFIX}{self.release}; left on {self.release}")
            return
        self.tags.put(self.repo(site), flux.PIN_TAG, back[1])
        self.tags.put(self.repo(site), flux.LIVE_TAG, back[1])

    # the waves
    def _digests(self, wave: Wave) -> dict[str, str]:
        return {site: self._release_manifest(site)[0] for site in wave.sites}

    def _waiting(self, wave: Wave, moved: set[str], reports: dict, now: float) -> list[str]:
        """The wave's online sites not moved yet, those whose window opens first first."""
        online = [s for s in wave.sites if s not in moved
                  and effective(reports.get(s), now, self.plan.offline_after_s) != "offline"]
        return sorted(online, key=lambda s: (self._opening(s, now), s))

    def _opening(self, site: str, now: float) -> datetime:
        """When the site next applies a release: `now` itself while its window is open."""
        at = datetime.fromtimestamp(now, timezone.utc)
        return site_opening(self.sites[site], at) if site in self.sites else at

    def roll(self, wave: Wave, state: dict) -> tuple[WaveCount, str, int]:
        """Move the wave through its gate, then soak; (its count, the halt's reason or "", polls since the
        first failure)."""
        digests, first_failure, poll = self._digests(wave), None, 0
        while True:
            now, reports = self.clock.now(), self.statuses.read(self.plan.env)
            self._reports = reports
            if recall.failed(self, state["late"], reports):
                return WaveCount(wave.name, len(wave.sites)), self._revert_late(state, reports), 0
            moved = set(state["moved"])
            counted = count(wave.name, wave.sites, moved, reports, digests, now, self.plan.offline_after_s)
            first_failure = poll if counted.failed and first_failure is None else first_failure
            waiting = self._waiting(wave, moved, reports, now)
            at = datetime.fromtimestamp(now, timezone.utc)  # a float round trip put an open window after now
            excused = {s for s in counted.pending_sites if self._opening(s, now) > at}
            controls = control.read(self.tags, self.plan.env)
            if control.aborted(controls, self.release):
                return counted, f"aborted by {control.aborted(controls, self.release)}", 0
            if control.paused(controls, self.release) and counted.failed <= wave.budget:
                state["wave_started"] += self.plan.poll_s  # its deadline does not run while paused
                verdict = Verdict("wait")
            else:
                deadline = now >= state["wave_started"] + self.plan.deadline_s
                verdict = decide(counted, wave.budget, wave.min_healthy, len(waiting), deadline, excused)
            if verdict.action == "halt":
                return counted, verdict.reason, 0 if first_failure is None else poll - first_failure
            if verdict.action == "move":
                self._move_more(state, waiting[:verdict.moves])
                continue
            if verdict.action == "pass":
                if state["soak_started"] is None:
                    late = [s for s in wave.sites if s not in moved] + counted.pending_sites
                    state.update(soak_started=now, phase="soaking", late=sorted(set(state["late"]) | set(late)))
                    self._save(state)
                    for site in wave.sites:
                        self.move(site)
                if now - state["soak_started"] >= self.plan.soak_s:
                    return counted, "", 0
            self.clock.sleep(self.plan.poll_s)
            self._renew()
            poll += 1

    def _move_more(self, state: dict, sites: list[str]) -> None:
        """Saved before the tags move: a resume moves the same sites, never a new choice."""
        state["moved"] = state["moved"] + sites
        self._save(state)
        for site in sites:
            self.move(site)

    def run(self) -> Outcome:
        """Promote (or resume), wave by wave; the lock is held throughout and released at the end."""
        self.acquire()
        try:
            return self._run()
        finally:
            self.release_lock()

    # late sites
    def _revert_late(self, state: dict, reports: dict[str, SiteStatus]) -> str:
        """Every late site not healthy on the release moved back; the reason."""
        failed = recall.failed(self, state["late"], reports)
        back = [s for s in state["late"] if not recall.healthy(self, s, reports)]
        state.update(late=[], late_reverted=sorted(set(state.get("late_reverted", [])) | set(back)))
        self._save(state)
        for site in back:
            self.revert(site)
        return f"late sites failed on the release: {', '.join(failed)}; {len(back)} late sites moved back"

    def release_digest(self, site: str) -> str:
        """The release's digest for the site ("" when it has no artifact of the release)."""
        try:
            return self._release_manifest(site)[0]
        except PromotionError:
            return ""

    def watch(self, state: dict, counts: list[WaveCount]) -> Outcome:
        """A finished promotion re-run: late sites that reported healthy leave the list; a late failure moves
        every late site not yet healthy back."""
        reports = self.statuses.read(self.plan.env)
        reason = self._revert_late(state, reports) if recall.failed(self, state["late"], reports) else ""
        state["late"] = [s for s in state["late"] if not recall.healthy(self, s, reports)]
        self._save(state)
        if reason:
            self._record(state | {"reason": reason}, "late")
        return Outcome(self.plan.env, self.release, "done", counts, reason=reason, late=state["late"],
                       late_reverted=state.get("late_reverted", []))

    def busy(self) -> bool:
        """Whether another run holds the lock now."""
        return self._held_by_other(self.tags.read_doc(self.state_repo, "lock"))

    def mark_held(self, by: str) -> None:
        """This release's promotion ends halted, held by an operator (fleet/recall/hold.py)."""
        state = self.tags.read_doc(self.state_repo, "state") or {}
        if state.get("release") == self.release:
            state.update(phase="halted", reason=f"held by {by}", late=[],
                         wave=min(state.get("wave", 0), len(self.plan.waves) - 1))  # done: past the last wave
            self._save(state)
            self._record(state, "hold")

    def _run(self) -> Outcome:
        state = self._start_state()
        waves = self.plan.waves
        counts = [WaveCount(w.name, len(w.sites)) for w in waves]
        if state["phase"] in ("reverting", "halted"):
            return self._halt(state, waves[state["wave"]], counts, 0, state.get("reason", ""))
        if state["phase"] == "done":
            return self.watch(state, counts)
        while state["wave"] < len(waves) and state["phase"] != "done":
            wave = waves[state["wave"]]
            if wave.approval and state["wave_started"] is None \
                    and not control.approved(control.read(self.tags, self.plan.env), self.release, wave.name):
                reason = f"wave {wave.name} waits for approval (./kit fleet.approve --wave {wave.name})"
                return Outcome(self.plan.env, self.release, "waiting", counts, reason=reason, late=state["late"])
            if state["wave_started"] is None:
                state["wave_started"] = self.clock.now()
                self._save(state)
            for site in state["moved"]:
                self.move(site)  # a resume finishes what the saved state says moved
            counts[state["wave"]], reason, polls = self.roll(wave, state)
            if reason:
                return self._halt(state, wave, counts, polls, reason)
            self.log(f"wave {wave.name}: {counts[state['wave']].healthy}/{len(wave.sites)} healthy, "
                     f"{counts[state['wave']].offline} offline")
            state = self._wave_state(state | {"wave": state["wave"] + 1})
            self._save(state)
        state["phase"] = "done"
        self._save(state)
        self._record(state, "")
        return Outcome(self.plan.env, self.release, "done", counts, late=state["late"],
                       late_reverted=state.get("late_reverted", []))

    def _record(self, state: dict, halted_wave: str) -> None:
        """One line per promotion in tag `history` (the newest HISTORY_KEPT), for fleet.status --history."""
        doc = self.tags.read_doc(self.state_repo, "history") or {"promotions": []}
        entry = {"release": self.release, "run": self.run_id, "result": state["phase"], "wave": halted_wave,
                 "reason": state.get("reason", ""), "late": state.get("late", []), "at": self.clock.now()}
        same = ("release", "result", "wave", "reason")
        if doc["promotions"] and all(doc["promotions"][-1].get(k) == entry[k] for k in same):
            return  # a re-run that found it finished
        self.tags.write_doc(self.state_repo, "history", {"promotions": (doc["promotions"] + [entry])[-HISTORY_KEPT:]})

    def _halt(self, state: dict, wave: Wave, counts: list[WaveCount], polls: int, reason: str) -> Outcome:
        state.update(phase="reverting", reason=reason)
        self._save(state)
        for site in wave.sites:
            self.revert(site)
        state["phase"] = "halted"
        self._save(state)
        self._record(state, wave.name)
        self.log(f"wave {wave.name}: halted, moved back: {reason}")
        return Outcome(self.plan.env, self.release, "halted", counts, wave.name, polls, reason, state.get("late", []),
                       state.get("late_reverted", []))
