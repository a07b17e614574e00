"""Fleet delivery end to end with the real engine (issue 17 item 3, issue 18's end-to-end test): a lab site's Flux
objects, rendered by fleet.render, on the real kube-apiserver with the real Flux Operator, source-, kustomize- and
notification-controller and kube-controller-manager (lab/programs/flux_site.py); a release pushed by fleet.release
to the real docker-registry, pulled with the site's own token; reports through fleet.receiver into the status store
fleet.promote reads.

The tests run in file order on one site (each step starts from the state the one before left). The release's
Deployment is judged without a kubelet: at 0 replicas the Deployment controller reports it available (healthy); at
1 replica its Pod never runs, and progressDeadlineSeconds makes the controller report ProgressDeadlineExceeded,
which kstatus reads as Failed and kustomize-controller's health check fails on at once (fail-fast is on unless
the DisableFailFastBehavior gate is set: kustomize-controller v1.9.4 main.go).

Then fleet.promote runs for real against that site: a good release is done, a broken one halts and the site
runs the previous one again, and one whose layers the registry lost halts on source-controller's error event.
Each real event the promotion judged calibrates the simulator's (tests/fleet/simfleet.py) for the same case."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from common.oci import Registry
from fleet import flux
from fleet.config import load_fleet
from fleet.plan import load_rollout
from fleet.promote import Promotion, RegistryTags, WallClock
from fleet.status import from_event
from lab.programs.flux_site import FluxSite
from tests.fleet.simfleet import fetch_failed_event, report_event
from tests.realapi.fleetsite import ENV, SITE, FrontedRegistry, Site, condition, wait_for

METALLB = Path(__file__).resolve().parents[3] / "shared" / "upstream" / "metallb-0.16.1"


@pytest.fixture(scope="module")
def world(real_api, kubectl, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleetflux")
    registry = FrontedRegistry(tmp / "registry").start()
    engine = FluxSite.start(real_api, tmp / "flux", kubectl=kubectl.binary)
    # the release carries the site's MetalLB pool: MetalLB's CRDs as upstream ships them (edge_hosts pins 0.16.1)
    for name in ("ipaddresspools", "l2advertisements"):
        kubectl.run("apply", "--server-side", "-f", str(METALLB / f"metallb.io_{name}.yaml"))
    kubectl.run("create", "namespace", "metallb-system")
    try:
        yield Site(tmp, registry, kubectl, engine)
    finally:
        engine.stop()
        registry.close()


def digest_in(obj: dict, *path: str) -> str:
    for key in path:
        obj = (obj or {}).get(key, {})
    return obj if isinstance(obj, str) else ""


def deployment(world) -> dict:
    return world.get("deployment", "inference", "inference")


def test_a_site_pulls_applies_and_reports_its_live_release_through_real_flux(world):
    r1 = world.release("r1")
    world.pusher.tag(world.repo, r1, flux.LIVE_TAG)
    objects = world.apply_site_objects()
    assert [o["kind"] for o in objects][:4] == ["ResourceSetInputProvider"] * 3 + ["ResourceSet"]

    # the scheduled provider (the window opened this hour) and the unscheduled one resolve `live` to r1
    for name in (flux.SITE_OBJECT, flux.NOW_PROVIDER):
        provider = wait_for(f"provider {name} exports r1", lambda n=name: (
            p := world.get("resourcesetinputprovider", n)) and r1 in str(p.get("status", {}).get("exportedInputs"))
            and p)
        assert condition(provider)["status"] == "True", provider["status"]
    pin = world.get("resourcesetinputprovider", flux.PIN_PROVIDER)
    assert not pin["status"].get("exportedInputs")  # no `pin` tag yet: no input

    rset = wait_for("ResourceSet ready", lambda: condition(r := world.get("resourceset")).get("status") == "True" and r)
    assert rset["status"]["inventory"]["entries"][0]["id"] == f"{flux.NAMESPACE}_{flux.SITE_OBJECT}_source.toolkit.fluxcd.io_OCIRepository"
    source = wait_for("OCIRepository ready", lambda: condition(s := world.get("ocirepository")).get("status") == "True" and s)
    assert source["spec"]["ref"] == {"digest": r1}
    assert r1 in source["status"]["artifact"]["revision"]
    # the pull went through the site's own token, scoped to its own repository
    assert (world.pull_user[0], f"{world.repo}:pull") in world.registry.tokens.issued

    kust = wait_for("Kustomization ready", lambda: condition(k := world.get("kustomization")).get("status") == "True" and k)
    assert r1 in kust["status"]["lastAppliedRevision"]
    applied = deployment(world)
    assert applied["spec"]["template"]["metadata"]["labels"]["fleet.test/release"] == "r1"
    assert applied["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == flux.SITE_OBJECT

    status = wait_for("the receiver records the site healthy on r1",
                      lambda: (s := world.store.read(ENV).get(SITE)) and s.state == "healthy" and s.digest == r1 and s)
    assert status.site == SITE
    senders = {(e["involvedObject"]["kind"], e["reportingController"]) for e in world.recorder.events}
    assert ("Kustomization", "kustomize-controller") in senders


def promotion(world, release: str, tags: RegistryTags | None = None) -> Promotion:
    rollout = world.tmp / "rollout.yaml"
    rollout.write_text(yaml.safe_dump({"environments": {ENV: {
        "waves": [{"name": "all", "failureBudget": 0}], "soak": "20s", "offlineDeadline": "4m",
        "pollInterval": "3s", "offlineAfter": "30m"}}}))
    sites = load_fleet(world.root).of(ENV)
    plan = load_rollout(ENV, sites, rollout)
    world.log = []
    return Promotion(plan, release, tags or RegistryTags(world.pusher), world.store, WallClock(), f"e2e-{release}",
                     log=world.log.append, sites={s.name: s for s in sites})


def calibrated(real: dict, simulated: dict) -> None:
    """The simulator's event (tests/fleet/simfleet.py) is the real controller's, as far as fleet.status reads it."""
    same = ("severity", "reason", "reportingController")
    assert real["involvedObject"]["kind"] == simulated["involvedObject"]["kind"]
    assert {k: real[k] for k in same} == {k: simulated[k] for k in same}, real
    assert set(simulated["metadata"]) <= set(real["metadata"]), real["metadata"]
    read = [from_event(e) for e in (real, simulated)]
    assert [(r.state, r.digest, r.fetch_failed) for r in read] == [(read[1].state, read[1].digest,
                                                                  read[1].fetch_failed)] * 2


def reported(world, kind: str, severity: str, digest: str) -> list[dict]:
    """The events the site sent about `digest` (by its revision, or by the pinned digest of a failed fetch)."""
    return [e for e in world.recorder.events if e["involvedObject"]["kind"] == kind and e["severity"] == severity
            and digest in e["metadata"].get("revision", e["metadata"].get("digest", ""))]


def test_a_good_release_promoted_for_real_reaches_ready_and_the_promotion_is_done(world):
    r2 = world.release("r2")
    outcome = promotion(world, "r2").run()
    assert outcome.result == "done", (outcome, world.log)
    assert world.store.read(ENV)[SITE].digest == r2 and world.store.read(ENV)[SITE].state == "healthy"
    kust = world.get("kustomization")
    assert condition(kust)["status"] == "True" and r2 in kust["status"]["lastAppliedRevision"]
    assert deployment(world)["spec"]["template"]["metadata"]["labels"]["fleet.test/release"] == "r2"
    healthy = [e for e in reported(world, "Kustomization", "info", r2) if e["reason"] == "ReconciliationSucceeded"]
    calibrated(healthy[0], report_event(ENV, SITE, "healthy", r2, 0))


def test_a_broken_release_halts_the_promotion_and_the_site_returns_to_the_previous_one(world):
    r2, r3 = world.digests["r2"], world.release("r3", replicas=1, deadline_s=10)
    outcome = promotion(world, "r3").run()
    assert outcome.result == "halted" and outcome.reason.startswith("1 sites failed on the release"), outcome
    failed = reported(world, "Kustomization", "error", r3)
    assert failed and "Deployment/inference/inference status: 'Failed'" in failed[0]["message"], failed[:1]
    calibrated(failed[0], report_event(ENV, SITE, "failed", r3, 0))
    # live (and the pin) moved back to r2; the real site follows and runs r2 again
    assert world.pusher.manifest(world.repo, flux.LIVE_TAG)[0] == r2
    assert world.pusher.manifest(world.repo, flux.PIN_TAG)[0] == r2
    back = wait_for("the site back on r2", lambda: (k := world.get("kustomization"))
                    and condition(k).get("status") == "True" and r2 in k["status"].get("lastAppliedRevision", "")
                    and k)
    assert back["spec"]["sourceRef"]["name"] == flux.SITE_OBJECT
    applied = deployment(world)
    assert applied["spec"]["replicas"] == 0
    assert applied["spec"]["template"]["metadata"]["labels"]["fleet.test/release"] == "r2"
    wait_for("the receiver records the site healthy on r2 again",
             lambda: (s := world.store.read(ENV).get(SITE)) and s.state == "healthy" and s.digest == r2)


class BlobsLostOnceLive(RegistryTags):
    """The registry loses the release's layers once `live` points at it (a retention purge, a replica that
    never got them): the tag moves, and every later pull of them is the real registry's BLOB_UNKNOWN (a
    registry refuses a tag on a manifest whose blobs it lacks, so they cannot go missing before)."""

    def __init__(self, pusher, deleter: Registry, release: str):
        super().__init__(pusher)
        self.deleter, self.release = deleter, release

    def put(self, repository, tag, manifest):
        super().put(repository, tag, manifest)
        if tag == flux.LIVE_TAG and hashlib.sha256(manifest).hexdigest() == self.release.removeprefix("sha256:"):
            for layer in json.loads(manifest)["layers"]:
                self.deleter._open(repository, f"blobs/{layer['digest']}", method="DELETE").close()


def test_a_release_the_site_cannot_fetch_is_a_failure_of_that_release_and_halts_the_promotion(world):
    before, r4 = world.pusher.manifest(world.repo, flux.LIVE_TAG)[0], world.release("r4")
    running = deployment(world)["spec"]["template"]["metadata"]["labels"]["fleet.test/release"]
    deleter = Registry(world.registry.url, world.registry.user("janitor", [("*", ("pull", "delete"))]))
    outcome = promotion(world, "r4", BlobsLostOnceLive(world.pusher, deleter, r4)).run()
    # counted as a failure of r4 from source-controller's event, not judged at the deadline for want of reports
    assert outcome.result == "halted", (outcome, world.log)
    assert outcome.reason == f"1 sites failed on the release, over the budget of 0: {SITE}", outcome
    failed = reported(world, "OCIRepository", "error", r4)
    assert failed and "BLOB_UNKNOWN" in failed[0]["message"] and r4 not in failed[0]["message"], failed[:1]
    calibrated(failed[0], fetch_failed_event(ENV, SITE, r4, 0))
    assert world.store.read(ENV)[SITE].fetch_failed == r4
    assert world.pusher.manifest(world.repo, flux.LIVE_TAG)[0] == before
    assert deployment(world)["spec"]["template"]["metadata"]["labels"]["fleet.test/release"] == running
