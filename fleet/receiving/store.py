"""Where the sites' latest reports are kept. StatusStore (fleet/status.py) is the folder one, for tests and the
lab; RegistryStatusStore keeps them in the environment's own registry (repository STATUS_REPOSITORY, one JSON
document under tag STATUS_TAG, as the promotion keeps its state), so the receiver on AKS and the promote
pipeline on an ephemeral agent share them and nothing is lost with a pod or an agent."""
from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Protocol

from fleet.status import NAME, SiteStatus, merge

STATUS_TAG = "sites"


def status_repository(env: str) -> str:
    return f"fleet-status/{env}"


class StatusBackend(Protocol):
    def record(self, env: str, status: SiteStatus) -> None: ...
    def read(self, env: str) -> dict[str, SiteStatus]: ...


class RegistryStatusStore:
    """Reports in tags (fleet.promote.Tags) of fleet-status/<env>: the newest report of each site wins, as in the
    folder store. One writer (the receiver, a single replica) keeps the document and writes it through."""

    def __init__(self, tags):
        self.tags = tags
        self._lock = threading.Lock()
        self._docs: dict[str, dict] = {}

    def _doc(self, env: str) -> dict:
        if env not in self._docs:
            self._docs[env] = self.tags.read_doc(status_repository(env), STATUS_TAG) or {}
        return self._docs[env]

    def record(self, env: str, status: SiteStatus) -> None:
        if not (NAME.match(env) and NAME.match(status.site)):
            raise ValueError(f"not a site or env name: {env!r} {status.site!r}")
        with self._lock:
            doc = dict(self._doc(env))
            previous = _status(doc.get(status.site))
            if previous is not None and previous.reported_at > status.reported_at:
                return
            doc[status.site] = asdict(merge(previous, status))
            self.tags.write_doc(status_repository(env), STATUS_TAG, doc)
            self._docs[env] = doc

    def read(self, env: str) -> dict[str, SiteStatus]:
        """Every site's latest report, as the registry holds it now (a reader never trusts a cached copy)."""
        doc = self.tags.read_doc(status_repository(env), STATUS_TAG) or {}
        return {site: status for site, raw in doc.items() if (status := _status(raw)) is not None}


def _status(raw) -> SiteStatus | None:
    try:
        return SiteStatus(**raw) if isinstance(raw, dict) else None
    except TypeError:
        return None  # a foreign entry: no report
