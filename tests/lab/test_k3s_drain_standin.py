"""The stand-in k3s where an upgrade relies on it: the cordon and drain scenarios of tests/lab/drain_scenarios.py,
which the real control plane passes too (tests/realapi/test_drain_real.py), and a node reporting the version of the
binary that runs, not the one on disk."""
import json

import pytest

from lab.lifecycle.inventory import K3S_VERSION
from lab.releases.artifacts import k3s_binary
from tests.lab import drain_scenarios
from tests.lab.test_standins import _put, kubectl, ready_nodes, server_and_agents, wait_for

TIMINGS = {"node_ready": 0.5, "heartbeat": 1.0, "retry": 0.3}
NEXT_PATCH = "v1.37.3+k3s1"


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    """edge-1 server, edge-2 and edge-3 agents."""
    lab = module_lab_factory(hosts=3, servers=1, timings=TIMINGS)
    server_and_agents(lab)
    return lab


@pytest.fixture(autouse=True)
def clean(lab):
    yield
    drain_scenarios.clean(lambda args, stdin=None: kubectl(lab, args, stdin=stdin))


@pytest.mark.parametrize("scenario", drain_scenarios.SCENARIOS, ids=lambda s: s.__name__)
def test_the_stand_in(lab, scenario):
    scenario(lambda args, stdin=None: kubectl(lab, args, stdin=stdin))


def node(lab, name):
    return json.loads(kubectl(lab, f"get node {name} -o json").stdout)


def test_a_node_reports_the_version_of_the_binary_that_runs(lab):
    kubelet = lambda: node(lab, "edge-3")["status"]["nodeInfo"]["kubeletVersion"]
    assert kubelet() == K3S_VERSION
    _put(lab, "edge-3", "/usr/local/bin/k3s", k3s_binary(NEXT_PATCH, TIMINGS), 0o755)
    assert lab.exec("edge-3", "k3s --version").stdout.startswith(f"k3s version {NEXT_PATCH}")
    assert kubelet() == K3S_VERSION  # on disk only: the running agent is the old one
    lab.exec("edge-3", "systemctl restart k3s-agent")
    assert wait_for(lambda: kubelet() == NEXT_PATCH)
    assert wait_for(lambda: "edge-3" in ready_nodes(lab))
