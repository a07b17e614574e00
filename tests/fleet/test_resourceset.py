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
