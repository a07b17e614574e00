"""Fleet delivery end to end with the real engine (issue 17 item 3, issue 18's end-to-end test): a lab site's Flux
objects, rendered by fleet.render, on the real kube-apiserver with the real Flux Operator, source-, kustomize- and
notification-controller and kube-controller-manager (lab/programs/flux_site.py); a release pushed by fleet.release
to the real docker-registry, pulled with the site's own token; reports through fleet.receiver into the status store
fleet.promote reads.

The tests run in file order on one site (each step starts from the state the one before left). The release's
Deployment is judged without a kubelet: at 0 replicas the Deployment controller reports it available (healthy); at
1 replica its Pod never runs, and progressDeadlineSeconds makes the controller report ProgressDeadlineExceeded,
which kstatus reads as Failed and kustomize-controller's health check fails on at once (fail-fast is on unless
the DisableFailFastBehavior gate is set: kustomize-controller v1.9.4 main.go)."""
from __future__ import annotations

from pathlib import Path

import pytest

from fleet import flux
from lab.programs.flux_site import FluxSite
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
