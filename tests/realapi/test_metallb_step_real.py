"""The kit's MetalLB step (tests/lab/metallb_step.py) against a real control plane (lab/programs/control_plane.py): a
lab host whose `k3s kubectl` is the real kubectl v1.37.2 against kube-apiserver, kube-controller-manager
(ReplicaSets, DaemonSets, EndpointSlices and Endpoints), kube-scheduler and kwok's Nodes, with MetalLB's real
controller v0.16.1 run as the Pod of the Deployment the kit installs (lab/programs/metallb.py run_as_pod). Nothing of
the release manifest is changed: the API server calls the webhooks through their Service, with the certificate
MetalLB's own rotation makes. The same scenario runs on the k3s stand-in (tests/lab/test_k3s_metallb_standin.py)."""
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.programs.build import NODES, pinned_version
from lab.programs.control_plane import RealControlPlane
from lab.programs.metallb import MetallbController
from lab.releases.upstream import kwok_stages
from tests.lab import metallb_step
from tests.lab.fixtures import lab_factory  # noqa: F401


@pytest.fixture
def site(lab_factory, tmp_path):
    """A 3-host lab whose first server's `k3s kubectl` reaches a real control plane with kwok's edge-1..3."""
    lab = lab_factory(hosts=3, servers=1)
    with RealControlPlane.start(lab, tmp_path / "plane", kwok_stages(pinned_version(NODES[1]))) as plane:
        yield lab, plane


def test_the_real_control_plane(site, tmp_path):
    lab, plane = site
    with ThreadPoolExecutor(1) as kubelet:
        controller = kubelet.submit(MetallbController.run_as_pod, plane.api, tmp_path / "metallb", lab.bridge)
        try:
            log = metallb_step.install_metallb(lab)
        finally:
            if controller.exception() is None:  # (waits: a controller Pod that never ran ends it at its deadline)
                controller.result().stop()
    output = (tmp_path / "metallb" / "metallb-controller.log").read_text()
    assert "MetalLB controller starting version 0.16.1" in output and "forbidden" not in output.lower()
    assert f"certs are ready in {tmp_path / 'metallb' / 'k8s-webhook-server' / 'serving-certs'}" in output
    hooks = json.loads(plane.api.kubectl(plane.kubectl, "get", "validatingwebhookconfiguration",
                                         "metallb-webhook-configuration", "--output=json").stdout)["webhooks"]
    assert all(h["clientConfig"]["service"]["name"] == "metallb-webhook-service" and h["clientConfig"]["caBundle"]
               for h in hooks)  # called through the Service, with the CA MetalLB's rotator injected
    assert not [err for err in metallb_step.webhook_refusals(log) if "failed calling webhook" not in err]
