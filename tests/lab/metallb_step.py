"""The kit's MetalLB step (edge_hosts/steps/metallb.py ensure_metallb, unchanged) as one scenario, run over real SSH
against a lab site's first server on the k3s stand-in (tests/lab/test_k3s_metallb_standin.py) and on a real control
plane with MetalLB's real controller (tests/realapi/test_metallb_step_real.py), so the stand-in's MetalLB (its
rollouts, the webhook Service's endpoints, the webhook's refusals while it starts, LoadBalancer addresses) is
calibrated by the real programs."""
import time

from edge_hosts.access.ssh import HostSession
from edge_hosts.artifacts.downloads import ArtifactSource
from edge_hosts.inventory.load import load_inventory
from edge_hosts.facts.cluster import snapshot, wait_readyz
from edge_hosts.steps.metallb import current_pool, ensure_metallb, kit_pool, pool_matches

POOL_APPLY = "k3s kubectl apply -f - >/dev/null"


class RecordingSession(HostSession):
    """A real HostSession that notes each command as it ends: (seconds since the session was made, the script's
    first line, exit code, stderr)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.t0, self.log = time.monotonic(), []

    def run(self, script: str, *args, **kwargs):
        result = super().run(script, *args, **kwargs)
        self.log.append((time.monotonic() - self.t0, script.splitlines()[0], result.code, result.err.strip()))
        return result


def webhook_refusals(log: list[tuple]) -> list[str]:
    """What the API server said each time it refused the kit's pool because it could not call MetalLB's webhook."""
    return [err for _, first, code, err in log if first.startswith(POOL_APPLY) and code != 0]


def install_metallb(lab, server: str = "edge-1") -> list[tuple]:
    """Run the step on `server` of `lab` (site.yaml as lab.up wrote it, every host a Ready node); assert it installs
    the pool the inventory asks for, its smoke-test Service got an address of the pool, and a second run changes
    nothing; and that the kit's cluster snapshot (one kubectl for nodes and pools, the nodes alone while MetalLB's
    CRD is missing) reads the nodes before and the pool after. Returns the first run's command log."""
    inventory = load_inventory(str(lab.site_file))
    source = ArtifactSource(inventory)
    session = RecordingSession(inventory, next(h for h in inventory.hosts if h.name == server))
    try:
        assert wait_readyz(session, 10)
        before = snapshot(session)
        assert sorted(before.nodes) == sorted(h.name for h in inventory.hosts)
        assert all(node.ready for node in before.nodes.values()) and before.pools == {"items": []}
        session.t0, session.log = time.monotonic(), []  # the step alone from here
        assert ensure_metallb(session, inventory, source, None) is True
        log = list(session.log)
        applied = current_pool(session)
        assert pool_matches(applied, inventory, source.metallb_artifact().sha256)
        assert kit_pool(snapshot(session).pools) == applied
        assert ensure_metallb(session, inventory, source, applied) is False  # nothing differs, nothing runs
    finally:
        session.close()
    return log
