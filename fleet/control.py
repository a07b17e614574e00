"""Operators' controls of a running promotion, kept in the registry beside its state (tag `control` of
`fleet-state/<env>`) so that they reach the run wherever it runs: abort (halt and move the wave back),
pause/resume (no further site moves and the wave's deadline stopped), and approval of a wave marked
`approval: true` in rollout.yaml (the promotion stops before it until approved). Each names the release it is
for: a control never outlives its release."""
from __future__ import annotations

CONTROL_TAG = "control"


def read(tags, env: str) -> dict:
    return tags.read_doc(f"fleet-state/{env}", CONTROL_TAG) or {}


def _write(tags, env: str, doc: dict) -> None:
    tags.write_doc(f"fleet-state/{env}", CONTROL_TAG, doc)


def abort(tags, env: str, release: str, by: str) -> None:
    _write(tags, env, read(tags, env) | {"abort": {"release": release, "by": by}})


def pause(tags, env: str, release: str, paused: bool) -> None:
    _write(tags, env, read(tags, env) | {"paused": release if paused else ""})


def approve(tags, env: str, release: str, wave: str) -> None:
    doc = read(tags, env)
    approved = doc.get("approved", {}).get(release, [])
    _write(tags, env, doc | {"approved": {release: sorted(set(approved) | {wave})}})


def aborted(doc: dict, release: str) -> str:
    """Who aborted this release ("" when nobody did)."""
    found = doc.get("abort") or {}
    return (found.get("by") or "an operator") if found.get("release") == release else ""


def paused(doc: dict, release: str) -> bool:
    return doc.get("paused") == release


def approved(doc: dict, release: str, wave: str) -> bool:
    return wave in doc.get("approved", {}).get(release, [])
