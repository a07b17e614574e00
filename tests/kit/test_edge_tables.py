"""The edge tables at 80 columns: no line longer, addresses and fingerprints whole, steps not repeated."""
import io

from rich.console import Console

from common.terminal import emit
from edge_hosts.access.hostkeys import TrustResult
from edge_hosts.engine.results import HostResult
from edge_hosts.tasks.tables import results_table, status_errors, status_table, trust_lines
from tests.kit.helpers import WIDTH, too_wide

AIRGAP = "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-arm64.tar.zst"


def rendered(renderable) -> str:
    out = io.StringIO()
    emit(Console(file=out, width=WIDTH, color_system=None), renderable)
    return out.getvalue()


def test_results_table_groups_changes_by_step_and_keeps_paths_whole():
    results = [HostResult("plant1-vision-07", "changed", ["os-prep: persist net.ipv4.ip_forward=1",
                                                          "artifacts: /usr/local/bin/k3s", f"artifacts: {AIRGAP}",
                                                          "install: run the install script (k3s-agent.service)"]),
               HostResult("edge-2", "ok"),
               HostResult("edge-10", "failed", [], "join: node never joined the cluster: the server rejected the "
                                                   "token (k3s-agent's log: 'token CA hash does not match')")]
    text = rendered(results_table("production", results))
    assert not too_wide(text), too_wide(text)
    assert text.count("artifacts:") == 1
    assert "artifacts: k3s, k3s-airgap-images-arm64.tar.zst" in text  # file names, whole, on one line
    assert "plant1-vision-07" in text and "token CA hash does not match" in " ".join(text.split())


def test_status_table_keeps_addresses_on_one_line_and_errors_below():
    hosts = [{"name": f"plant1-node-{i:02}", "role": "agent", "address": f"10.213.100.{200 + i}",
              "service": "k3s-agent", "reachable": True, "active": i != 3, "enabled": i != 2, "ready": i != 3,
              "version": "v1.33.6+k3s1",
              "error": "node plant1-node-03 is NotReady: kubelet stopped posting node status" if i == 3 else None}
             for i in range(1, 6)]
    report = {"site": "production", "metallb": {"pool": ["10.213.100.240-10.213.100.250"]}, "hosts": hosts}
    text = rendered(status_table(report))
    assert not too_wide(text), too_wide(text)
    for h in hosts:
        assert any(h["name"] in line and h["address"] in line for line in text.splitlines()), h["address"]
    assert sum("disabled" in line for line in text.splitlines()) == 1
    errors = status_errors(report)
    assert len(errors) == 1 and errors[0].startswith("plant1-node-03: node plant1-node-03 is NotReady")
    assert not too_wide("\n".join(errors))


def test_trust_lines_fit_with_whole_fingerprints():
    fingerprint = "SHA256:cCaZ6GhwlrpOo+ibqb+YRUL663F0vSlY7AGhqdIunzc"
    found = [(TrustResult("plant1-vision-07", "[plant1-vision-07.example.com]:2222", "ecdsa-sha2-nistp256",
                          fingerprint, "changed", "the key differs from the one recorded in known_hosts line 7"),
              None)]
    lines = trust_lines(found)
    assert not too_wide("\n".join(lines)), lines
    assert any(fingerprint in line for line in lines)
    assert lines[0] == "  plant1-vision-07  [plant1-vision-07.example.com]:2222  changed"
