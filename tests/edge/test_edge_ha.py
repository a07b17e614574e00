"""HA site: three servers (embedded etcd) joined one at a time, then the agent; a re-run changes nothing."""
from helpers import json_result, kit
from lab_checks import all_starts, host_config, host_file, ready_nodes


def first_start(lab, host: str, unit: str) -> float:
    return float(host_file(lab, host, f"/var/log/lab-units/{unit}.starts").read_text().split()[0])


def test_three_servers_join_one_at_a_time(lab_factory, tmp_path):
    lab = lab_factory(hosts=4, servers=3)
    kubeconfig = tmp_path / "kubeconfig"
    done = kit("edge.bootstrap", "--site", str(lab.site_file), "--json", "--kubeconfig", str(kubeconfig))
    hosts = json_result(done)
    assert done.returncode == 0, done.stderr
    assert "warning: 3 servers but no apiEndpoint: joins and the kubeconfig use edge-1 alone" in done.stderr
    assert ready_nodes(lab) == {"edge-1", "edge-2", "edge-3", "edge-4"}
    assert host_config(lab, "edge-1")["cluster-init"] is True
    for joiner in ("edge-2", "edge-3", "edge-4"):
        assert host_config(lab, joiner)["server"] == f"https://{lab.host('edge-1').address}:6443"
        assert "cluster-init" not in host_config(lab, joiner)
    started = [first_start(lab, h, "k3s") for h in ("edge-1", "edge-2", "edge-3")]
    agent = first_start(lab, "edge-4", "k3s-agent")
    # each server starts only after the previous one is Ready (the lab's nodes take >= 1 s to be Ready)
    assert started[1] - started[0] >= 1.0 and started[2] - started[1] >= 1.0
    assert agent > started[2]
    before = all_starts(lab)
    again = json_result(kit("edge.bootstrap", "--site", str(lab.site_file), "--json", "--kubeconfig", str(kubeconfig)))
    assert {h["status"] for h in again.values()} == {"ok"} and all_starts(lab) == before
    assert set(hosts) == set(again)
