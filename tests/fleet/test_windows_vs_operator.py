"""The kit's window schedules judged by the Flux Operator's own scheduler (tests/fleet/cronoracle.py): the kit
accepts exactly what the operator accepts (bar its three documented refusals), and a site's window admits a
reconcile exactly when the operator would, or next does when the operator next fires, across zones and clock
changes."""
import random
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from fleet import cron
from fleet.config import Window
from fleet.plan import next_opening
from tests.fleet import cronoracle, fleetgen
from tests.fleet.simfleet import SimFleet, SimSite
from tests.fleet.test_cron import ACCEPTED, REFUSED

STRICTER = ("@every gives no window", "has no value", "never fires")  # the kit's refusals the operator accepts
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "America/St_Johns"]
# moments around daylight-saving changes (EU and US, spring and autumn) and plain ones
AROUND = [datetime(2026, 3, 29, 0, 30, tzinfo=timezone.utc), datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc),
          datetime(2026, 3, 8, 6, 30, tzinfo=timezone.utc), datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc),
          datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)]


def _token(rng: random.Random, low: int, high: int, names: list[str]) -> str:
    a, b = rng.randint(low - 1, high + 1), rng.randint(low - 1, high + 1)
    return rng.choice(["*", "?", str(a), f"{a}-{b}", f"*/{rng.randint(0, 7)}", f"{a}/{rng.randint(1, 7)}",
                       f"{a}-{b}/{rng.randint(1, 4)}", f"{a},{b}", f"+{a}", f"*-{b}", "", "L", f"{a}W", f"{a}#2",
                       *(names or [str(a)]), *(f"{n}-{m}" for n, m in zip(names, reversed(names)))])


def _fuzzed(rng: random.Random, count: int) -> list[str]:
    """Expressions in and around the grammar: out-of-range numbers, 7 as Sunday, names, L/W/#, odd field counts."""
    fields = [(0, 59, []), (0, 23, []), (1, 31, []), (1, 12, ["JAN", "jun", "Dec", "FOO"]),
              (0, 7, ["MON", "fri", "SUN", "sat", "MONDAY"])]
    found = []
    for _ in range(count):
        parts = [_token(rng, *field) for field in fields]
        if rng.random() < 0.08:
            parts = parts[:rng.choice([4, 6])] if rng.random() < 0.5 else parts + ["*"]
        found.append(" ".join(parts))
    return found + ["@daily", "@weekly", "@every 1h", "@reboot", "@DAILY", "0 0 30 2 *", "0 0 , * *"]


def _kit_refusal(expression: str) -> str | None:
    try:
        cron.parse(expression)
    except cron.CronError as err:
        return str(err)
    return None


def test_the_kit_accepts_exactly_the_operators_grammar():
    expressions = ACCEPTED + [e for e, _ in REFUSED] + _fuzzed(random.Random(17), 3000)
    answers = [cronoracle.judge().ask(e, "UTC", "2h", AROUND[-1]) for e in expressions]
    differ = []
    for expression, answer in zip(expressions, answers):
        refusal, operator_refuses = _kit_refusal(expression), "error" in answer
        if (refusal is None) == operator_refuses and not (refusal and any(s in refusal for s in STRICTER)):
            differ.append((expression, refusal, answer.get("error")))
    assert differ == []
    assert sum("error" not in a for a in answers) > 200 and sum("error" in a for a in answers) > 2000  # both sides


def _windows(rng: random.Random, count: int) -> list[Window]:
    accepted = [e for e in _fuzzed(rng, 4000) if _kit_refusal(e) is None]
    return [Window(cron=e, timeZone=rng.choice(ZONES), duration=rng.choice(["4m", "30m", "90m", "2h", "25h"]))
            for e in rng.sample(accepted, count)]


def _moments(rng: random.Random) -> list[datetime]:
    base = rng.choice(AROUND)
    return [base + timedelta(minutes=rng.randint(0, 3 * 24 * 60), seconds=rng.choice([0, 0, 30]))
            for _ in range(6)]


def test_a_window_is_open_and_opens_exactly_when_the_operator_reconciles():
    rng = random.Random(18)
    cases = [(w, at) for w in _windows(rng, 250) for at in _moments(rng)]
    differ = [(w.cron, w.time_zone, w.duration, at.isoformat(), next_opening(w, at), operator)
              for w, at in cases
              if next_opening(w, at) != (operator := cronoracle.opening(w.cron, w.time_zone, w.duration, at))]
    assert len(cases) == 1500 and differ == []


def test_a_zone_whose_clocks_change_by_half_an_hour_is_refused_for_the_operator_misplaces_its_hours():
    saturday_night = datetime(2026, 4, 4, 12, tzinfo=timezone.utc)  # 23:00 there; clocks go back 30 min at 02:00
    answer = cronoracle.judge().ask("0 22 * * *", "Australia/Lord_Howe", "1h", saturday_night)
    assert answer["next"].astimezone(ZoneInfo("Australia/Lord_Howe")).date() == date(2026, 4, 6)  # Sunday skipped
    with pytest.raises(ValidationError, match="changes its clocks by less than an hour"):
        Window(cron="0 22 * * *", timeZone="Australia/Lord_Howe", duration="1h")
    Window(cron="0 22 * * *", timeZone="America/St_Johns", duration="1h")  # a half-hour offset, whole-hour changes



def test_a_simulated_site_is_in_its_window_exactly_when_the_operator_reconciles_between_microseconds():
    rng = random.Random(23)
    windows = _windows(rng, 40)
    sims = [SimSite(site) for site in fleetgen.sites(len(windows), {f"site-{i:04d}": [w]
                                                                   for i, w in enumerate(windows)})]
    for moment in _moments(rng):
        fleet = SimFleet("e", sims, None, None, moment)
        fleet.t += 8e-7  # as a wall clock reads: between two microseconds
        now = datetime.fromtimestamp(fleet.t, timezone.utc)
        for sim in sims:
            sim.next_open = 0.0
        window = [(s.site.name, fleet._in_window(s)) for s in sims]
        judged = [(s.site.name, cronoracle.opening(w.cron, w.time_zone, w.duration, now) == now)
                  for s, w in zip(sims, windows)]
        assert window == judged and any(open_ for _, open_ in judged), moment
