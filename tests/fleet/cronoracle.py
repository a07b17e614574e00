"""An oracle for window openings that does not share the kit's cron parser: croniter (PyPI, pinned in
pyproject.toml), limited to the expressions where croniter's semantics are robfig/cron v3.0.1's.

Known differences (checked with croniter 7.0.0 against robfig parser.go/spec.go v3.0.1), refused here so the
oracle never judges them: croniter takes 7 as Sunday (robfig: out of range); it treats `*/1` and `?/1` in a day
field as a restriction (robfig keeps them `*`: `0 0 1 * */1` is the 1st of the month there, every day in
croniter); it refuses `*-3` and `+5` (robfig reads them as `*` and 5); it also accepts L, W, #, H and six or
seven fields, which robfig refuses (tests/fleet/test_cron.py holds the kit to robfig on those).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from fleet.config import duration_s

NAMES = (set("jan feb mar apr may jun jul aug sep oct nov dec".split()), set("sun mon tue wed thu fri sat".split()))
DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def comparable(expression: str) -> bool:
    """Whether croniter reads this expression as the Flux Operator does (see the differences above)."""
    if expression.strip().startswith("@"):
        return expression.strip() in DESCRIPTORS
    fields = expression.split()
    if len(fields) != 5 or re.search(r"\*-|\+|#", expression):
        return False
    for i, field in enumerate(fields):
        words = {t.lower() for t in re.split(r"[,/-]", field) if t.isalpha()}
        if words - (NAMES[i - 3] if i >= 3 else set()):
            return False  # L, W, H (croniter) or any other word (robfig refuses)
    day_of_week = [t for t in re.split(r"[,/-]", fields[4]) if t.isdigit()]
    return not (any(int(t) > 6 for t in day_of_week) or re.search(r"[*?]/0*1(?![0-9])", fields[2] + " " + fields[4]))


def opening(cron: str, zone: str, duration: str, after: datetime) -> datetime:
    """When a window (cron, zone, duration) next opens at or after `after`, or `after` if it is open then:
    the first trigger later than after - duration."""
    assert comparable(cron), f"croniter differs from robfig on {cron!r}: not an oracle for it"
    start = after.astimezone(ZoneInfo(zone)) - timedelta(seconds=duration_s(duration))
    return max(croniter(cron, start).get_next(datetime), after)
