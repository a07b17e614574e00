"""What a promotion reads to move sites back: whether a pinned site runs the old `live`, and which late sites
(moved while offline or outside their window) failed on or are healthy on the release. `promotion` is a
fleet.promote.Promotion (its tags, its sites' repositories and the release's digest per site)."""
from __future__ import annotations

from fleet import flux
from fleet.status import SiteStatus


def pin_to_carry(promotion, site: str, live: tuple[str, bytes], reports: dict[str, SiteStatus]) -> bool:
    """Whether the site's pin must move to the old `live` before `live` moves on: a pinned site runs its pin
    until its window resolves the new `live`, so the pin follows the old `live` once the site reported running
    it healthy (else the pin stays on what the site runs)."""
    pin = promotion.tags.get(promotion.repo(site), flux.PIN_TAG)
    if pin is None or pin[0] == live[0]:
        return False
    report = reports.get(site)
    return report is not None and report.digest == live[0] and report.state == "healthy"


def failed(promotion, late: list[str], reports: dict[str, SiteStatus]) -> list[str]:
    """Late sites that failed on the release (its health checks, or its pull)."""
    found = []
    for site in late:
        report, digest = reports.get(site), promotion.release_digest(site)
        if report is not None and digest and (report.fetch_failed == digest
                                              or (report.digest == digest and report.state == "failed")):
            found.append(site)
    return found


def healthy(promotion, site: str, reports: dict[str, SiteStatus]) -> bool:
    report = reports.get(site)
    return report is not None and report.digest == promotion.release_digest(site) and report.state == "healthy"
