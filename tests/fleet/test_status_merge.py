"""A site's latest status as the store keeps it: what an event says, whose clock stamps it, how a fetch failure
joins the last report and when it is dropped, which of two reports wins, the store's checks, and when a silent
site is offline (survivors `./kit mutate` found in fleet/status.py)."""
import stat
import time
from datetime import datetime, timezone

import pytest

from fleet.status import SiteStatus, StatusStore, effective, from_event, merge

OLD, NEW = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def _event(timestamp="2026-12-07T10:00:00Z", revision=f"live@{OLD}"):
    return {"involvedObject": {"kind": "Kustomization"}, "severity": "info", "reason": "ReconciliationSucceeded",
            "message": "applied", "timestamp": timestamp, "metadata": {"site": "a", "env": "qa", "revision": revision}}


def _oci_error(digest, message="failed to pull artifact: MANIFEST_UNKNOWN"):
    return {"involvedObject": {"kind": "OCIRepository"}, "severity": "error", "reason": "OCIArtifactPullFailed",
            "message": message, "timestamp": "2026-12-07T10:00:00Z",
            "metadata": {"site": "a", "env": "qa", "digest": digest}}


def _pull_failed(digest, at, message="blob unknown"):
    return SiteStatus("a", "failed", digest, at, message, fetch_failed=digest)


def test_the_receivers_clock_stamps_a_report_the_events_own_only_without_it():
    assert from_event(_event(), received_at=1_800_000_000.5).reported_at == 1_800_000_000.5
    assert from_event(_event()).reported_at == datetime(2026, 12, 7, 10, tzinfo=timezone.utc).timestamp()
    before = time.time()
    assert before <= from_event(dict(_event(), timestamp="")).reported_at <= time.time()  # none: when received


def test_a_fetch_failure_joins_the_last_report_with_its_time_and_message():
    last = SiteStatus("a", "healthy", OLD, 100.0, "applied")
    assert merge(last, _pull_failed(NEW, 160.0)) == SiteStatus("a", "healthy", OLD, 160.0, "blob unknown",
                                                                fetch_failed=NEW)
    # an error pulling what it runs passes (the artifact is there): only the report's time moves
    assert merge(last, _pull_failed(OLD, 170.0)) == SiteStatus("a", "healthy", OLD, 170.0, "applied")


def test_a_report_keeps_a_fetch_failure_of_another_digest_and_drops_one_of_its_own():
    failing = SiteStatus("a", "healthy", OLD, 160.0, "blob unknown", fetch_failed=NEW)
    still_old = SiteStatus("a", "healthy", OLD, 200.0, "applied")
    assert merge(failing, still_old) == SiteStatus("a", "healthy", OLD, 200.0, "applied", fetch_failed=NEW)
    on_new = SiteStatus("a", "progressing", NEW, 210.0, "applying")
    assert merge(failing, on_new) == on_new
    # a report without a revision is a report, not a fetch failure (its digest and fetch_failed are both empty)
    unknown = SiteStatus("a", "progressing", "", 220.0, "waiting")
    assert merge(SiteStatus("a", "healthy", OLD, 100.0), unknown) == unknown


def test_the_store_keeps_the_newest_report_and_a_same_second_one_joins_it(tmp_path):
    store = StatusStore(tmp_path)
    store.record("qa", SiteStatus("a", "healthy", OLD, 100.0, "applied"))
    store.record("qa", SiteStatus("a", "failed", OLD, 90.0, "older"))  # arrived late: ignored
    assert store.read("qa")["a"] == SiteStatus("a", "healthy", OLD, 100.0, "applied")
    store.record("qa", _pull_failed(NEW, 100.0))  # Flux event timestamps have whole seconds: a tie joins
    assert store.read("qa")["a"].fetch_failed == NEW
    mode = stat.S_IMODE((tmp_path / "qa" / "a.json").stat().st_mode)
    assert mode == 0o644  # no secret in it, nothing to execute


def test_the_store_refuses_a_bad_env_or_site_name_naming_both(tmp_path):
    store = StatusStore(tmp_path)
    with pytest.raises(ValueError, match=r"^not a site or env name: 'Q A' 'a'$"):
        store.record("Q A", SiteStatus("a", "healthy", OLD, 1.0))
    with pytest.raises(ValueError, match=r"^not a site or env name: 'qa' 'A_B'$"):
        store.record("qa", SiteStatus("A_B", "healthy", OLD, 1.0))
    assert not list(tmp_path.iterdir())


def test_an_events_message_is_kept_to_500_characters_and_an_error_that_is_only_waiting_is_progressing():
    assert from_event(_event()).message == "applied"
    assert from_event({k: v for k, v in _event().items() if k != "message"}).message == ""
    assert from_event(_oci_error(NEW)).message == "failed to pull artifact: MANIFEST_UNKNOWN"
    assert from_event(_oci_error(NEW, "x" * 600)).message == "x" * 500  # the store keeps reports small
    for reason, state in (("DependencyNotReady", "progressing"), ("ArtifactFailed", "progressing"),
                          ("Progressing", "progressing"), ("HealthCheckFailed", "failed")):
        assert from_event(dict(_event(), severity="error", reason=reason)).state == state, reason


def test_an_event_without_a_revision_is_a_report_about_no_digest():
    event = _event()
    event["metadata"] = {"site": "a", "env": "qa"}
    assert (from_event(event).state, from_event(event).digest) == ("healthy", "")


def test_a_site_is_offline_only_once_silent_for_longer_than_the_limit():
    last = SiteStatus("a", "healthy", OLD, 1000.0)
    assert effective(last, 1300.0, 300) == "healthy"
    assert effective(last, 1300.5, 300) == "offline"
    assert effective(None, 0.0, 300) == "offline"
