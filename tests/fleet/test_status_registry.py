"""The durable status store (issue 18 item 6, part): the receiver writes each site's report into the env's
registry (fleet-status/<env>), and ./kit fleet.status --statuses registry, as the promote pipeline runs it on an
ephemeral agent, reads them back; the newest report of a site wins."""
import json
import threading

from fleet.artifact import Pusher
from fleet.config import load_fleet
from fleet.promote import RegistryTags
from fleet.receiver import server
from fleet.receiving.keys import signature, site_key
from fleet.receiving.store import RegistryStatusStore
from fleet.status import SiteStatus
from tests.fleet.test_receiving import post
from tests.fleet.test_release import point_at
from tests.fleet.test_status import _kit, event

MASTER = b"z" * 32


def test_signed_reports_reach_the_registry_and_fleet_status_reads_them(seeds, registry):
    point_at(seeds, registry)
    user = registry.user("receiver", [("fleet-status/*", ("pull", "push"))])
    store = RegistryStatusStore(RegistryTags(Pusher(registry.url, user)))
    httpd = server(("127.0.0.1", 0), store, MASTER, {"production": 1}, clock=lambda: 4_000_000_000.0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        sites = [s.name for s in load_fleet(seeds).of("production")]
        for site in sites:
            body = json.dumps(event(site)).encode()
            url = f"http://127.0.0.1:{httpd.server_address[1]}/sites/production/{site}"
            assert post(url, body, signature(site_key(MASTER, 1, "production", site), body)) == 202
    finally:
        httpd.shutdown()
        httpd.server_close()
    fresh = RegistryStatusStore(RegistryTags(Pusher(registry.url, user)))  # another process: no cache
    assert {s: r.state for s, r in fresh.read("production").items()} == {s: "healthy" for s in sites}
    fresh.record("production", SiteStatus(sites[0], "failed", "sha256:" + "c" * 64, 3_000_000_000.0))
    assert fresh.read("production")[sites[0]].state == "healthy"  # older than what the registry holds
    env = {"FLEET_REGISTRY_USER": user[0], "FLEET_REGISTRY_PASSWORD": user[1], "PATH": "/usr/bin:/bin"}
    done = _kit("fleet.status", "--env", "production", "--root", str(seeds), "--statuses", "registry", "--json",
                env=env)
    assert done.returncode == 0, done.stderr
    assert sum(w["healthy"] for w in json.loads(done.stdout)["waves"]) == len(sites)


def test_the_promote_pipeline_reads_the_registry_store_not_an_agent_folder():
    import yaml
    from tests.fleet.test_status import ROOT
    template = yaml.safe_load((ROOT / "pipelines/templates/fleet-promote.yml").read_text())
    default = {p["name"]: p.get("default") for p in template["parameters"]}["statusesPath"]
    assert default == "registry"
    steps = template["jobs"][0]["strategy"]["runOnce"]["deploy"]["steps"]
    readers = [s for s in steps if "--statuses" in s.get("script", "")]
    assert len(readers) == 2 and all("FLEET_REGISTRY_PASSWORD" in s["env"] for s in readers)
