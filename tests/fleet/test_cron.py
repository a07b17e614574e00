"""Window crons: the Flux Operator's grammar (robfig/cron v3.0.1 with descriptors) accepted, anything else
refused at load with the file and key (window openings are judged by the operator's own scheduler in
tests/fleet/test_windows_vs_operator.py)."""
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from fleet import cron
from fleet.config import FleetError, Window, load_fleet
from fleet.plan import late_sites, next_opening
from tests.fleet import cronoracle, fleetgen
from tests.fleet.conftest import SEEDS, edit

# Accepted by robfig's Parse (parser.go v3.0.1): names either case, `?`, N/step, `*-x` read as `*`, signs (Atoi)
ACCEPTED = ["0 6 * * MON-FRI", "0 6 * * mon,wed,fri", "*/15 2-4 * JAN-Mar ?", "5/20 * * * *", "0 0 29 2 *",
            "0 6 1-7 * MON", "0 22 * * SUN-SAT/2", "@daily", "@midnight", "@weekly", "@monthly", "@yearly",
            "@annually", "@hourly", "  0 1 * * 1-5  ", "*-3 * * * *", "+5 1 * * *", "0 0 ? * ?", "0,30 6 * * 0"]
# (expression, what the error says)
REFUSED = [("0 6 * * 7", "day of week: '7' is outside 0-6"), ("0 6 * * 1-7", "outside 0-6"),
           ("60 6 * * *", "minute: '60' is outside 0-59"), ("0 24 * * *", "hour"), ("0 0 0 * *", "day of month"),
           ("0 0 * 13 *", "month"), ("0 0 * * MONDAY", "'MONDAY' is not a number or a name"),
           ("0 MON * * *", "hour: 'MON' is not a number"), ("0 0 L * *", "day of month: 'L'"),
           ("0 0 * * 1#2", "'1#2' is not a number"), ("0 0 1W * *", "'1W'"), ("H 0 * * *", "'H'"),
           ("0 0 * * 5-1", "starts after it ends"), ("*/0 * * * *", "step of '*/0' must be positive"),
           ("1-2-3 * * * *", "too many hyphens"), ("*/2/3 * * * *", "too many slashes"),
           ("0 0 * *", "expected 5 fields"), ("0 0 0 * * *", "found 6"), ("", "found 0"),
           ("CRON_TZ=UTC 0 0 * * *", "put the zone in timeZone"), ("@every 1h", "@every gives no window"),
           ("@DAILY", "unknown descriptor"), ("@reboot", "unknown descriptor"), ("0 0 , * *", "has no value"),
           ("0 0 30 2 *", "never fires"), ("0 0 31 4,6,9,11 *", "never fires"), ("0 0 */-1 * *", "negative"),
           ("0 0 * * MON/FRI", "'FRI' is not a number")]


@pytest.mark.parametrize("expression", ACCEPTED)
def test_the_operators_grammar_is_accepted(expression):
    assert cron.parse(expression).minutes


@pytest.mark.parametrize(("expression", "reason"), REFUSED)
def test_anything_else_is_refused_with_its_reason(expression, reason):
    with pytest.raises(cron.CronError) as err:
        cron.parse(expression)
    assert reason in str(err.value)


def test_day_fields_are_anded_when_one_is_a_star_and_ored_when_both_are_restricted():
    monday = datetime(2026, 12, 14)  # not in 1-7
    first = datetime(2027, 1, 1)    # a Friday
    either = cron.parse("0 6 1-7 * MON")
    assert either.day_matches(monday) and either.day_matches(first)
    assert not either.day_matches(datetime(2026, 12, 15))
    assert cron.parse("0 6 ? * MON").day_matches(monday) and not cron.parse("0 6 ? * MON").day_matches(first)
    assert not cron.parse("0 6 1 * */1").day_matches(monday)  # */1 keeps the star: the 1st only
    assert cron.parse("0 6 */2 * MON").day_matches(monday)    # */2 is a restriction: OR


def test_a_named_weekday_window_plans_without_crashing(tmp_path):
    window = Window(cron="0 1 * * MON-FRI", timeZone="Europe/Berlin", duration="3h")
    sites = fleetgen.sites(3, {"site-0001": [window]})
    saturday = datetime(2026, 12, 12, 12, 0, tzinfo=timezone.utc)
    assert next_opening(window, saturday) == datetime(2026, 12, 14, 0, 0, tzinfo=timezone.utc)  # 01:00 CET
    assert next_opening(window, saturday) == cronoracle.opening(window.cron, "Europe/Berlin", "3h", saturday)
    plan = fleetgen.plan(tmp_path, sites, offlineDeadline="1h")
    late = late_sites(plan, {s.name: s for s in sites}, saturday)
    assert [s for wave in late.values() for s in wave] == ["site-0001"]


def test_a_day_7_window_is_refused_at_load_naming_file_and_key(seeds):
    edit(seeds / "sites" / "store-lyon" / "site.yaml",
         windows=[{"cron": "0 6 * * 7", "timeZone": "Europe/Paris", "duration": "2h"},
                  {"cron": "0 6 * * MON-FRI", "timeZone": "Europe/Paris", "duration": "2h"}])
    edit(seeds / "sites" / "plant-berlin" / "site.yaml",
         windows=[{"cron": "@every 6h", "timeZone": "Europe/Berlin", "duration": "1h"}])
    with pytest.raises(FleetError) as err:
        load_fleet(seeds)
    text = str(err.value)
    assert "sites/store-lyon/site.yaml: windows[0].cron: Value error, day of week: '7' is outside 0-6" in text
    assert "plant-berlin/site.yaml: windows[0].cron: Value error, @every gives no window" in text
    assert "windows[1]" not in text


def test_kit_render_of_a_bad_cron_is_exit_2_without_a_traceback(seeds):
    edit(seeds / "sites" / "store-lyon" / "site.yaml",
         windows=[{"cron": "0 6 * * SUNDAY", "timeZone": "Europe/Paris", "duration": "2h"}])
    done = subprocess.run([sys.executable, "-m", "common.cli", "fleet.render", "--env", "production", "--root",
                           str(seeds), "--models", str(seeds.parent / "models")], cwd=SEEDS.parent,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "store-lyon/site.yaml: windows[0].cron" in done.stderr and "'SUNDAY' is not a number" in done.stderr
