"""The cron grammar of a site's window, exactly as the Flux Operator v0.58.1 parses it.

The operator (internal/schedule/scheduler.go Parse) prefixes `CRON_TZ=<timeZone>` and parses with robfig/cron
v3.0.1 `NewParser(Minute | Hour | Dom | Month | Dow | Descriptor)`; what follows is that parser (parser.go,
spec.go at v3.0.1):
- five fields split on whitespace: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of
  week 0-6 or SUN-SAT (7 is out of range); names are case-insensitive and allowed only in those two fields;
- a field is a comma list of `*`, `?` (the same as `*`, in any field), `n`, `a-b`, each with an optional
  `/step`; `n/step` means n to the field's maximum; numbers are Go `strconv.Atoi` (an optional sign);
- the day matches when day of month AND day of week match if either field holds `*` or `?` without a step
  over 1; otherwise when EITHER matches (spec.go dayMatches): `0 6 1-7 * MON` is the 1st-7th and every Monday;
- descriptors @yearly @annually @monthly @weekly @daily @midnight @hourly.
The kit is stricter in three ways, each rejected with its reason: `@every` (the operator accepts it, but its
trigger is always later than now, so its window never closes), a field with no value (`,`: robfig accepts
it and the schedule never fires), and a day/month pair that never exists (`0 0 30 2 *`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

MONTHS = {n: i + 1 for i, n in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
DAYS = {n: i for i, n in enumerate("sun mon tue wed thu fri sat".split())}
DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
               "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
LONGEST = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
HORIZON_DAYS = 5 * 366  # robfig's SpecSchedule.Next gives up 5 years ahead (spec.go yearLimit)
RECONCILE_TIMEOUT = timedelta(minutes=2)  # the providers' fluxcd.controlplane.io/reconcileTimeout (fleet/flux.py)
_INT = re.compile(r"^[+-]?[0-9]+$")  # what Go's strconv.Atoi accepts


@dataclass(frozen=True)
class Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


FIELDS = (Field("minute", 0, 59), Field("hour", 0, 23), Field("day of month", 1, 31),
          Field("month", 1, 12, MONTHS), Field("day of week", 0, 6, DAYS))


class CronError(ValueError):
    """Not a schedule the Flux Operator runs; the message says why."""


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]  # 0 = Sunday
    either_day: bool      # neither day field is `*`/`?`: a day matches when either field matches

    def day_matches(self, day: date) -> bool:
        dom, dow = day.day in self.doms, (day.weekday() + 1) % 7 in self.dows
        return day.month in self.months and ((dom or dow) if self.either_day else (dom and dow))


def _number(text: str, field: Field) -> int:
    if field.names and text.lower() in field.names:
        return field.names[text.lower()]
    if not _INT.match(text):
        named = f" or a name ({', '.join(n.upper() for n in field.names)})" if field.names else ""
        raise CronError(f"{field.name}: '{text}' is not a number{named}")
    if int(text) < 0:
        raise CronError(f"{field.name}: negative number '{text}'")
    return int(text)


def _range(expr: str, field: Field) -> tuple[set[int], bool]:
    """The values of one `range[/step]` and whether it counts as `*`."""
    parts = expr.split("/")
    bounds = parts[0].split("-")
    if len(parts) > 2:
        raise CronError(f"{field.name}: too many slashes in '{expr}'")
    if bounds[0] in ("*", "?"):  # robfig ignores anything after "*-"
        start, end, star = field.low, field.high, True
    elif len(bounds) > 2:
        raise CronError(f"{field.name}: too many hyphens in '{expr}'")
    else:
        start = _number(bounds[0], field)
        end, star = _number(bounds[-1], field), False
    step = 1
    if len(parts) == 2:
        step = _number(parts[1], Field(field.name, 0, 0))
        end = field.high if len(bounds) == 1 else end
        star = star and step <= 1
    if start < field.low or end > field.high:
        raise CronError(f"{field.name}: '{expr}' is outside {field.low}-{field.high}")
    if start > end:
        raise CronError(f"{field.name}: '{expr}' starts after it ends")
    if step == 0:
        raise CronError(f"{field.name}: the step of '{expr}' must be positive")
    return set(range(start, end + 1, step)), star


def _field(text: str, field: Field) -> tuple[frozenset[int], bool]:
    values, star = set(), False
    for expr in (e for e in text.split(",") if e):
        found, is_star = _range(expr, field)
        values |= found
        star = star or is_star
    if not values:
        raise CronError(f"{field.name}: '{text}' has no value (the schedule would never fire)")
    return frozenset(values), star


@lru_cache(maxsize=1024)
def parse(text: str) -> Schedule:
    """The schedule of a window's cron; CronError says what is wrong."""
    spec = text.strip()
    if spec.startswith("@"):
        if spec.startswith("@every "):
            raise CronError("@every gives no window (its next trigger is always after now): use a cron expression")
        if spec not in DESCRIPTORS:
            raise CronError(f"unknown descriptor '{spec}' (one of {', '.join(DESCRIPTORS)})")
        spec = DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected 5 fields (minute hour day-of-month month day-of-week), found {len(fields)}"
                        + (" (put the zone in timeZone)" if "=" in spec else ""))
    (minutes, _), (hours, _), (doms, dom_star), (months, _), (dows, dow_star) = (
        _field(f, spec_field) for f, spec_field in zip(fields, FIELDS))
    if not dom_star and dow_star and not any(d <= LONGEST[m] for d in doms for m in months):
        raise CronError("no month has these days of the month: the schedule never fires")
    return Schedule(minutes, hours, doms, months, dows, either_day=not (dom_star or dow_star))


@lru_cache(maxsize=64)
def zone_problem(name: str) -> str | None:
    """Why the operator cannot keep a window in this zone, or None. robfig's Next steps an hour at a time, so across
    a clock change of less than an hour (Australia/Lord_Howe's 30 minutes) it misplaces triggers: `0 22 * * *` skips
    the Sunday of the change (found by tests/fleet/test_windows_vs_operator.py, with the operator's own scheduler)."""
    zone, day = ZoneInfo(name), datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    offsets = [(day + timedelta(days=n)).astimezone(zone).utcoffset() for n in range(0, HORIZON_DAYS, 7)]
    changes = {abs(b - a) for a, b in zip(offsets, offsets[1:]) if a != b}
    if any(change % timedelta(hours=1) for change in changes):
        return (f"'{name}' changes its clocks by less than an hour, which the Flux Operator's scheduler (robfig/cron "
                "v3.0.1) misplaces: windows would be skipped or open late; use a zone with whole-hour changes, e.g. UTC")
    return None


def admits(opened: datetime, length: timedelta, at: datetime) -> bool:
    """Whether a window opened at `opened` still lets the operator reconcile at `at`: at least the reconcile
    timeout must be left (internal/schedule ShouldReconcile: now + timeout before the window's end)."""
    return opened <= at and at + RECONCILE_TIMEOUT < opened + length
