"""What each site last reported, from the events its notification-controller sends.

The `generic` provider POSTs the event as JSON (fluxcd/pkg apis/event v1beta1 Event: involvedObject,
severity info|error, reason, message, metadata, timestamp); the Alert adds `site` and `env` to the metadata
(spec.eventMetadata). The source-controller's revision of an OCI artifact is '<tag>@sha256:<digest>' or
'sha256:<digest>' (ocirepository_controller.go getRevision), which is what `metadata.revision` carries.
An OCIRepository error event (source-controller: the pull of the pinned digest failed, reasons such as
OCIArtifactPullFailed, OCIArtifactLayerOperationFailed, AuthenticationFailed) carries no revision, and its
message may name a layer rather than the artifact; the pinned digest comes as metadata `digest` (the
OCIRepository's event annotation, fleet/flux.py EVENT_DIGEST_ANNOTATION). It is a fetch failure of that digest:
kept with the site's latest report (`fetch_failed`) until the site reports on that digest itself, so a site running the old release that cannot
pull the new one counts as failed on the new one, and a failure about the old digest never does.
A StatusStore keeps the latest report per site as a JSON file; the promotion and fleet.status read it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from common.files import atomic_write

STATES = ("healthy", "progressing", "failed", "offline")
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$")  # site and env names (fleet.config.NAME)
PROGRESSING_REASONS = {"Progressing", "DependencyNotReady", "ArtifactFailed"}


@dataclass(frozen=True)
class SiteStatus:
    site: str
    state: str        # healthy | progressing | failed (as reported; "offline" is derived from its age)
    digest: str       # the artifact digest the report is about
    reported_at: float  # Unix seconds
    message: str = ""
    fetch_failed: str = ""  # a digest the site could not pull (from its OCIRepository's error events)


def digest_of(revision: str) -> str:
    """sha256:<hex> of a Flux revision ('live@sha256:...', 'sha256:...')."""
    found = re.search(r"sha256:[0-9a-f]{64}", revision)
    return found.group(0) if found else ""


def from_event(event: dict, received_at: float | None = None) -> SiteStatus | None:
    """A site's status from a Kustomization event, or a fetch failure from an OCIRepository error event;
    None for other events. received_at (the receiver's clock) is the report's time when given: a site's own
    clock is not trusted (a Raspberry Pi has no RTC); the event's timestamp only without it (the simulator)."""
    meta, kind = event.get("metadata") or {}, (event.get("involvedObject") or {}).get("kind")
    if kind not in ("Kustomization", "OCIRepository") or not NAME.match(str(meta.get("site"))):
        return None
    if received_at is not None:
        stamp = datetime.fromtimestamp(received_at, timezone.utc)
    elif event.get("timestamp"):
        stamp = datetime.fromisoformat(str(event["timestamp"]))  # RFC 3339's "Z" too (Python 3.11+, gh-80010)
    else:
        stamp = datetime.now(timezone.utc)
    message = str(event.get("message", ""))[:500]
    if kind == "OCIRepository":
        digest = digest_of(str(meta.get("digest", "")))  # the pinned one (fleet/flux.py EVENT_DIGEST_ANNOTATION)
        if event.get("severity") != "error" or not digest:
            return None  # a new artifact is reported by the Kustomization that applies it
        return SiteStatus(meta["site"], "failed", digest, stamp.timestamp(), message, fetch_failed=digest)
    if event.get("severity") == "error":
        state = "progressing" if event.get("reason") in PROGRESSING_REASONS else "failed"
    else:
        state = "healthy" if event.get("reason") == "ReconciliationSucceeded" else "progressing"
    return SiteStatus(meta["site"], state, digest_of(meta.get("revision", "")), stamp.timestamp(), message)


def merge(previous: SiteStatus | None, new: SiteStatus) -> SiteStatus:
    """The site's latest status: a fetch failure joins the last report; a report keeps an earlier fetch
    failure of another digest (the site still runs what it ran)."""
    if previous is None:
        return new
    if new.fetch_failed and new.state == "failed" and new.digest == new.fetch_failed:
        if previous.digest == new.fetch_failed:
            return replace(previous, reported_at=new.reported_at)  # it runs that digest: a passing fetch error
        return replace(previous, reported_at=new.reported_at, fetch_failed=new.fetch_failed, message=new.message)
    kept = previous.fetch_failed if previous.fetch_failed != new.digest else ""
    return replace(new, fetch_failed=kept)


class StatusStore:
    """<root>/<env>/<site>.json: the latest report of each site (the newest wins)."""

    def __init__(self, root: Path):
        self.root = root

    def record(self, env: str, status: SiteStatus) -> None:
        if not (NAME.match(env) and NAME.match(status.site)):
            raise ValueError(f"not a site or env name: {env!r} {status.site!r}")
        folder = self.root / env
        folder.mkdir(parents=True, exist_ok=True)
        previous = self._one(folder / f"{status.site}.json")
        if previous is None or previous.reported_at <= status.reported_at:
            atomic_write(folder / f"{status.site}.json", json.dumps(asdict(merge(previous, status))), 0o644)

    @staticmethod
    def _one(path: Path) -> SiteStatus | None:
        try:
            return SiteStatus(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None  # absent, or a foreign file: no report

    def read(self, env: str) -> dict[str, SiteStatus]:
        folder = self.root / env
        if not folder.is_dir():
            return {}
        found = {}
        for entry in os.scandir(folder):
            if entry.name.endswith(".json") and (status := self._one(Path(entry.path))) is not None:
                found[entry.name[:-5]] = status
        return found


def effective(status: SiteStatus | None, now: float, offline_after_s: float) -> str:
    """The state to act on: a site silent for longer than offline_after_s is offline."""
    if status is None or now - status.reported_at > offline_after_s:
        return "offline"
    return status.state
