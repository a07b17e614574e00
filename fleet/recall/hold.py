"""An emergency hold of a release: every site of the env on it moved back at once, whatever its window (each
gets its pin, fleet/flux.py), under the promotion's lock. A running promotion of the release is aborted first
(fleet/control.py) and halts at its next poll, moving its wave back and freeing the lock."""
from __future__ import annotations

from fleet import control, flux


def hold(promotion, by: str, tries: int = 5) -> list[str]:
    """Hold promotion's release (a fleet.promote.Promotion); the sites moved back."""
    control.abort(promotion.tags, promotion.plan.env, promotion.release, f"{by} (hold)")
    for _ in range(tries - 1):
        if not promotion.busy():
            break
        promotion.clock.sleep(promotion.plan.poll_s)
    promotion.acquire()  # PromotionError naming the holder when the running one did not stop
    try:
        promotion.mark_held(by)
        sites = [s for wave in promotion.plan.waves for s in wave.sites if promotion.release_digest(s)]
        on = [s for s in sites
              if (promotion.tags.get(promotion.repo(s), flux.LIVE_TAG) or ("",))[0] == promotion.release_digest(s)]
        for site in on:
            promotion.revert(site)
        return on
    finally:
        promotion.release_lock()
