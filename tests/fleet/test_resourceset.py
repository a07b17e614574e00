"""Each site's ResourceSet rendered by the Flux Operator's own code (tests/fleet/operator.py) from the inputs its
providers export: which digest the site's OCIRepository is pinned to, whatever the site's windows did."""
import pytest

from fleet import flux
from tests.fleet import crds, fleetgen, operator
from fleet.config import Window

LIVE, OLD = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.fixture(scope="module")
def objects():
    window = Window(cron="0 6 * * 0", timeZone="Europe/Paris", duration="2h")
    site = fleetgen.sites(1, {"site-0000": [window]})[0]
    return {o["metadata"]["name"] + "/" + o["kind"]: o for o in flux.site_objects(site, site.env, [])}


def _tag(digest, tag=flux.LIVE_TAG):
    return [{"id": "1", "tag": tag, "digest": digest}]


def _pinned(objects, exported):
    applied = operator.render(objects["site/ResourceSet"], exported)
    assert [o["kind"] for o in applied] == ["OCIRepository"]
    crds.validate(applied[0], "flux-controllers")
    return applied[0]["spec"]["ref"]["digest"]


def test_the_two_providers_track_live_one_inside_the_windows_one_at_any_time(objects):
    scheduled, now = objects["site/ResourceSetInputProvider"], objects[f"{flux.NOW_PROVIDER}/ResourceSetInputProvider"]
    assert scheduled["spec"]["schedule"] == [{"cron": "0 6 * * 0", "timeZone": "Europe/Paris", "window": "2h"}]
    assert "schedule" not in now["spec"] and now["spec"]["filter"] == scheduled["spec"]["filter"]
    for obj in objects.values():
        crds.validate(obj)


def test_a_site_that_never_applied_a_release_pins_the_current_one_at_once(objects):
    # outside its window the scheduled provider exports nothing (Reconciliation skipped) at creation
    assert _pinned(objects, {flux.SITE_OBJECT: [], flux.NOW_PROVIDER: _tag(LIVE)}) == LIVE


def test_once_it_had_a_window_the_site_keeps_what_its_window_resolved(objects):
    assert _pinned(objects, {flux.SITE_OBJECT: _tag(OLD), flux.NOW_PROVIDER: _tag(LIVE)}) == OLD
    assert _pinned(objects, {flux.SITE_OBJECT: _tag(LIVE), flux.NOW_PROVIDER: _tag(LIVE)}) == LIVE


BAD = "sha256:" + "3" * 64


def test_a_site_moved_back_outside_its_window_runs_its_pin_at_once(objects):
    # its window resolved the bad release; live and the pin went back to the previous one after the window closed
    pin = _tag(OLD, flux.PIN_TAG)
    assert _pinned(objects, {flux.SITE_OBJECT: _tag(BAD), flux.NOW_PROVIDER: _tag(OLD), flux.PIN_PROVIDER: pin}) == OLD
    # without a pin (never moved back) it waits for its window on what it resolved
    assert _pinned(objects, {flux.SITE_OBJECT: _tag(OLD), flux.NOW_PROVIDER: _tag(LIVE), flux.PIN_PROVIDER: []}) == OLD


def test_a_pin_is_ignored_once_the_window_resolved_live_again(objects):
    pin = _tag(OLD, flux.PIN_TAG)
    assert _pinned(objects, {flux.SITE_OBJECT: _tag(LIVE), flux.NOW_PROVIDER: _tag(LIVE), flux.PIN_PROVIDER: pin}) == LIVE
    # a held first-release site: the pin and live are the hold artifact, its window never resolved anything
    hold = "sha256:" + "4" * 64
    assert _pinned(objects, {flux.SITE_OBJECT: [], flux.NOW_PROVIDER: _tag(hold),
                             flux.PIN_PROVIDER: _tag(hold, flux.PIN_TAG)}) == hold


def test_the_pin_provider_has_no_schedule_and_reads_the_pin_tag(objects):
    pin = objects[f"{flux.PIN_PROVIDER}/ResourceSetInputProvider"]
    assert "schedule" not in pin["spec"] and pin["spec"]["filter"] == {"includeTag": "^pin$", "limit": 1}
