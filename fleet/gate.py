"""A wave's gate, from the sites' reports: which sites may move next, and whether the wave passed or halts.

The sites of a wave that run the release without having reported it healthy (failed, or moved and not yet
reported) are never more than budget + 1: the first budget + 1 online sites are the probe, and each further
site moves only when one before it reported healthy. A failure keeps its place, so the wave never widens while
a failure is pending, and a release that breaks every site reaches budget + 1 sites of a wave at most. A wave
passes only on positive evidence: at least min_healthy healthy reports on the release (default: the probe's
size), every moved site reported (or, at the deadline, the ones that did not have no open window: late).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fleet.status import SiteStatus, effective


@dataclass
class WaveCount:
    name: str
    sites: int
    healthy: int = 0
    failed: int = 0
    progressing: int = 0
    offline: int = 0
    failed_sites: list[str] = field(default_factory=list)
    pending_sites: list[str] = field(default_factory=list)  # moved, no report on the release yet


def count(name: str, sites: tuple[str, ...], moved: set[str], reports: dict[str, SiteStatus],
          digests: dict[str, str], now: float, offline_after_s: float) -> WaveCount:
    """Each site as the gate sees it: a report about another digest (the old release) is not about this one; a
failed pull of this one is a failure."""
    counted = WaveCount(name, len(sites))
    for site in sites:
        status = reports.get(site)
        state = effective(status, now, offline_after_s)
        on_release = status is not None and status.digest == digests[site]
        if status is not None and status.fetch_failed == digests[site] and state != "offline":
            on_release, state = True, "failed"  # it cannot pull the release
        if on_release and state == "healthy":
            counted.healthy += 1
        elif on_release and state == "failed":
            counted.failed += 1
            counted.failed_sites.append(site)
        elif state == "offline":
            counted.offline += 1
        else:
            counted.progressing += 1
        if site in moved and not (on_release and state in ("healthy", "failed")):
            counted.pending_sites.append(site)
    return counted


@dataclass(frozen=True)
class Verdict:
    action: str      # move | wait | pass | halt
    moves: int = 0
    reason: str = ""


def decide(counted: WaveCount, budget: int, min_healthy: int, unmoved_online: int, deadline: bool,
           excused: set[str]) -> Verdict:
    """What the wave does next; excused: pending sites whose window is closed (late, not missing)."""
    if counted.failed > budget:
        return Verdict("halt", reason=f"{counted.failed} sites failed on the release, over the budget of {budget}: "
                                      f"{', '.join(counted.failed_sites)}")
    room = budget + 1 - counted.failed - len(counted.pending_sites)
    if unmoved_online and room > 0:
        return Verdict("move", min(room, unmoved_online))
    missing = [s for s in counted.pending_sites if s not in excused]
    if not deadline and (missing or unmoved_online):
        return Verdict("wait")
    if counted.healthy < min_healthy:
        return Verdict("halt", reason=f"too little evidence: {counted.healthy} healthy reports on the release, "
                                      f"{min_healthy} needed ({len(counted.pending_sites)} moved sites silent, "
                                      f"{counted.offline} offline)")
    if missing:
        return Verdict("halt", reason=f"deadline: {len(missing)} online sites with an open window did not report "
                                      f"the release: {', '.join(missing[:10])}")
    if unmoved_online:  # every moved site is late or failed, and they fill the probe
        return Verdict("halt", reason=f"deadline: {unmoved_online} online sites never moved: the probe's "
                                      f"{budget + 1} places are held by {counted.failed} failed and "
                                      f"{len(counted.pending_sites)} late sites")
    return Verdict("pass")
