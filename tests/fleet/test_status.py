"""Status back: Flux events received (generic-hmac), rolled up per wave as a table, JSON and an HTML page
opened in headless Chromium; and ./kit fleet.promote end to end on the seeds."""
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import yaml

from fleet import flux
from fleet.config import load_fleet
from fleet.release import build, push_release
from fleet.artifact import Pusher
from fleet.status import SiteStatus, StatusStore, from_event
from tests.fleet.conftest import SEEDS
from tests.fleet.simfleet import fetch_failed_event
from tests.fleet.test_release import REVISION, point_at

ROOT = SEEDS.parent
ARTIFACTS = ROOT / "out" / "test-artifacts"
DIGEST = "sha256:" + "c" * 64


def event(site, reason="ReconciliationSucceeded", severity="info", env="production", digest=DIGEST):
    return {"involvedObject": {"kind": "Kustomization", "name": "site", "namespace": "flux-system"},
            "severity": severity, "reason": reason, "message": "m", "reportingController": "kustomize-controller",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "metadata": {"revision": f"live@{digest}", "site": site, "env": env}}


def test_flux_events_map_to_site_states():
    assert from_event(event("a")).state == "healthy" and from_event(event("a")).digest == DIGEST
    assert from_event(event("a", "HealthCheckFailed", "error")).state == "failed"
    assert from_event(event("a", "Progressing")).state == "progressing"
    assert from_event(dict(event("a"), involvedObject={"kind": "OCIRepository"})) is None  # info: no failure
    assert from_event(dict(event("a"), involvedObject={"kind": "ResourceSet"})) is None
    assert from_event(event("../../etc")) is None


def _post(url, body: bytes, signature: str):
    request = urllib.request.Request(url, data=body, method="POST", headers={"X-Signature": signature})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as err:
        return err.code


def _kit(*args, env=None):
    return subprocess.run([sys.executable, "-m", "common.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env)


def _fast_rollout(seeds):
    (seeds / "rollout.yaml").write_text(yaml.safe_dump({"environments": {
        "qa": {"waves": [{"name": "all"}], "soak": "0s", "offlineDeadline": "1h", "pollInterval": "1s"},
        "production": {"canaries": ["plant-berlin"], "waves": [{"name": "stores", "labels": {"kind": "store"}},
                                                               {"name": "rest"}],
                       "soak": "0s", "offlineDeadline": "1h", "pollInterval": "1s"}}}))


def test_kit_promote_moves_the_live_tag_and_a_second_run_finds_it_done(seeds, registry, tmp_path):
    point_at(seeds, registry)
    _fast_rollout(seeds)
    fleet = load_fleet(seeds)
    models, _, sites = build(fleet, "qa", seeds.parent / "models", REVISION)
    user = registry.user("promoter", [("*", ("pull", "push"))])
    release = push_release(fleet, "qa", "p1", models, sites, REVISION, Pusher(registry.url, user))
    store = StatusStore(tmp_path / "status")
    store.record("qa", SiteStatus("qa-line", "healthy", release.sites["qa-line"], time.time() + 60))
    env = {"FLEET_REGISTRY_USER": user[0], "FLEET_REGISTRY_PASSWORD": user[1], "PATH": "/usr/bin:/bin"}
    args = ("fleet.promote", "--env", "qa", "--release", "p1", "--root", str(seeds), "--statuses", str(store.root),
            "--run-id", "build-1")
    done = _kit(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["result"] == "done"
    live = Pusher(registry.url, user).manifest(flux.repository_path("qa", "qa-line"), flux.LIVE_TAG)
    assert live[0] == release.sites["qa-line"]
    missing = _kit("fleet.promote", "--env", "qa", "--release", "nope", "--root", str(seeds), "--statuses",
                   str(store.root), env=env)
    assert missing.returncode == 1 and "no artifact tagged nope: run fleet.release first" in missing.stderr
    assert "Traceback" not in missing.stderr and user[1] not in missing.stderr
    unknown = _kit("fleet.promote", "--env", "staging", "--release", "p1", "--root", str(seeds), env=env)
    assert unknown.returncode == 2 and "no plan for 'staging'" in unknown.stderr


def _reports(store: StatusStore, fleet, env):
    states = ["healthy", "failed", "progressing"]
    for i, site in enumerate(fleet.of(env)):
        store.record(env, SiteStatus(site.name, states[i % 3], DIGEST, time.time() - 5))


def test_kit_status_json_counts_per_wave(seeds, tmp_path):
    _fast_rollout(seeds)
    fleet = load_fleet(seeds)
    store = StatusStore(tmp_path / "status")
    _reports(store, fleet, "production")
    done = _kit("fleet.status", "--env", "production", "--root", str(seeds), "--statuses", str(store.root), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [(w["name"], w["sites"], w["healthy"], w["failed"]) for w in data["waves"]] == [
        ("canary", 1, 1, 0), ("stores", 1, 0, 1)]
    table = _kit("fleet.status", "--env", "production", "--root", str(seeds), "--statuses", str(store.root),
                 "--html", str(tmp_path / "page.html"))
    assert table.returncode == 0 and "canary" in table.stdout and "stores" in table.stdout
    page = (tmp_path / "page.html").read_text()
    assert page.startswith("<!doctype html>") and 'data-wave="stores"' in page and "http" not in page.lower()


def test_kit_receive_without_its_key_tls_or_receiver_is_bad_input(seeds):
    edit_env(seeds, "qa", notifyType="azuredevops", receiver=None,
             notifyAddress="https://dev.azure.com/contoso/mlops/_git/mlops-edge-kit")
    done = _kit("fleet.receive", "--env", "qa", "--root", str(seeds), "--listen", "10.0.0.1:x",
                "--cert", "/nonexistent.crt", env={"PATH": "/usr/bin:/bin", "FLEET_WEBHOOK_KEY": "short"})
    assert done.returncode == 2 and "Traceback" not in done.stderr and "short" not in done.stderr
    for problem in ("FLEET_WEBHOOK_KEY: set it", "--listen: give address:port", "--cert and --key: give both",
                    "environments.qa.receiver: missing"):
        assert problem in done.stderr


def _chromium(*args, user_data):
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is needed (apt-get install chromium)"
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={user_data}", *args], capture_output=True, text=True, timeout=120)


def test_the_html_page_renders_in_chromium_with_every_wave_and_the_json_counts(seeds, tmp_path):
    from tests.fleet import fleetgen
    many = fleetgen.sites(1200, env="production")
    plan = fleetgen.plan(tmp_path, many)
    from fleet import rollup
    reports = {s.name: SiteStatus(s.name, ("healthy", "failed", "progressing")[i % 3], DIGEST, time.time() - 5)
               for i, s in enumerate(many) if i % 10}
    data = rollup.summary(plan, rollup.rows(plan, reports, time.time()), time.time())
    page = tmp_path / "fleet.html"
    page.write_text(rollup.to_html(data))
    dom = _chromium("--dump-dom", page.as_uri(), user_data=tmp_path / "chrome1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for wave in data["waves"]:
        assert f'data-wave="{wave["name"]}"' in dom.stdout
        for state in ("healthy", "progressing", "failed", "offline"):
            assert f'<span class="count" data-state="{state}">{state}: {wave[state]}</span>' in dom.stdout
    assert dom.stdout.count('class="cell"') == 1200
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "fleet-status.png"
    shot.unlink(missing_ok=True)
    taken = _chromium(f"--screenshot={shot}", "--window-size=1280,1400", page.as_uri(), user_data=tmp_path / "chrome2")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _pull_failed(site, digest):
    return fetch_failed_event("production", site, digest, time.time() + 1)


def test_a_failed_pull_is_a_failure_of_the_digest_it_asked_for_not_of_what_the_site_runs(tmp_path):
    from fleet.gate import count
    new = "sha256:" + "d" * 64
    store = StatusStore(tmp_path)
    store.record("production", from_event(event("a")))  # runs the old release (DIGEST), healthy
    store.record("production", from_event(_pull_failed("a", new)))
    store.record("production", from_event(event("a")))  # its next report, still on the old release
    status = store.read("production")["a"]
    assert (status.digest, status.state, status.fetch_failed) == (DIGEST, "healthy", new)
    now = time.time() + 2
    assert count("w", ("a",), {"a"}, store.read("production"), {"a": new}, now, 1800).failed_sites == ["a"]
    assert count("w", ("a",), set(), store.read("production"), {"a": DIGEST}, now, 1800).healthy == 1
    store.record("production", from_event(_pull_failed("a", DIGEST)))  # a passing error on what it runs
    assert store.read("production")["a"].fetch_failed == new
    assert from_event(dict(_pull_failed("a", new), severity="info")) is None
    assert from_event(dict(_pull_failed("a", new), metadata={"site": "a", "env": "production"})) is None


def edit_env(seeds, env: str, **changes) -> None:
    """Change one environment of the seeds' fleet.yaml (None removes a key)."""
    path = seeds / "fleet.yaml"
    data = yaml.safe_load(path.read_text())
    data["environments"][env] |= {k: v for k, v in changes.items() if v is not None}
    for key in [k for k, v in changes.items() if v is None]:
        data["environments"][env].pop(key, None)
    path.write_text(yaml.safe_dump(data))
