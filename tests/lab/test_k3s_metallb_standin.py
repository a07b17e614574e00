"""The stand-in k3s where the kit's MetalLB step relies on it: the scenario of tests/lab/metallb_step.py, which the
real control plane with MetalLB's real controller passes too (tests/realapi/test_metallb_step_real.py)."""
import pytest

from tests.lab import metallb_step
from tests.lab.test_standins import server_and_agents

TIMINGS = {"node_ready": 0.5, "heartbeat": 1.0, "retry": 0.3}


@pytest.fixture
def lab(lab_factory):
    """edge-1 server, edge-2 and edge-3 agents, no MetalLB yet."""
    lab = lab_factory(hosts=3, servers=1, timings=TIMINGS)
    server_and_agents(lab)
    return lab


def test_the_stand_in(lab):
    log = metallb_step.install_metallb(lab)
    assert metallb_step.webhook_refusals(log)  # its webhook refuses a while after its endpoints appear
