"""The cordon and drain scenarios an upgrade relies on (tests/lab/drain_scenarios.py) against the real control
plane: kube-apiserver, kube-controller-manager (the disruption controller's PodDisruptionBudget status, ReplicaSets,
DaemonSets), kube-scheduler and kwok's nodes (lab/programs/nodes.py), through the real kubectl v1.37.2, the one the
kit's `k3s kubectl drain` is. The same scenarios pass on the lab's k3s stand-in, which is thereby calibrated."""
import shlex
import subprocess

import pytest

from lab.programs.build import KUBERNETES, NODES, ensure_programs, pinned_version
from lab.programs.nodes import LabNodes
from lab.releases.upstream import kwok_stages
from tests.lab import drain_scenarios


@pytest.fixture(scope="module")
def kubectl(real_api, tmp_path_factory):
    """kubectl(args, stdin) against the module's API server, with NODES looked after by kwok."""
    binary = ensure_programs(programs=KUBERNETES)["kubectl"]
    stages = kwok_stages(pinned_version(NODES[1]))
    with LabNodes.start(real_api, tmp_path_factory.mktemp("nodes"), list(drain_scenarios.NODES), stages):
        def run(args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
            return subprocess.run([str(binary), f"--kubeconfig={real_api.kubeconfig}", *shlex.split(args)],
                                  input=stdin, capture_output=True, text=True, timeout=120)
        yield run


@pytest.fixture(autouse=True)
def clean(kubectl):
    yield
    drain_scenarios.clean(kubectl)


@pytest.mark.parametrize("scenario", drain_scenarios.SCENARIOS, ids=lambda s: s.__name__)
def test_the_real_control_plane(kubectl, scenario):
    scenario(kubectl)
