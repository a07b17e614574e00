"""Joins as on real hosts: agents with the agent token, a re-created cluster, a re-imaged host, failures named from
the unit's log within k3s.joinTimeout, a unit disabled behind the kit's back, speakerless nodes, arch aliases.
Every test starts from a converged site (the `site` fixture) and leaves it converged."""
import pytest
import yaml

from helpers import json_result, kit, lab_site
from lab_checks import all_starts, host_config, host_file, ready_nodes, ready_nodes_or_none

SHARED_STATE = True  # one kit state for the module: re-runs keep the site's tokens, as on an operator's machine

HOSTS = ["edge-1", "edge-2", "edge-3", "edge-4"]


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=4, servers=1)


def bootstrap(site, state, *extra: str, timeout: float = 600):
    done = kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(state / "kubeconfig"), *extra,
               timeout=timeout)
    return done, json_result(done)


@pytest.fixture
def site(lab, state):
    """The lab site, converged (bootstrapped when it is not)."""
    if ready_nodes_or_none(lab) != set(HOSTS):
        done, _ = bootstrap(lab.site_file, state)
        assert done.returncode == 0, done.stdout + done.stderr
    return lab.site_file


@pytest.fixture
def site_state(private_state):
    """The lab site's token store and cluster CA in the module's kit state."""
    return private_state / "mlops-edge-kit/sites/lab"


def passwords(site_state) -> tuple[str, str]:
    return tuple((site_state / n).read_text().strip() for n in ("server-token", "agent-token"))


def test_agents_join_with_the_agent_token_never_the_server_token(lab, site, site_state):
    server_pw, agent_pw = passwords(site_state)
    agent_token = host_file(lab, "edge-1", "/var/lib/rancher/k3s/server/agent-token").read_text().strip()
    assert agent_token.endswith(f"::node:{agent_pw}") and server_pw != agent_pw
    assert host_config(lab, "edge-1")["agent-token"] == agent_pw
    for name in HOSTS[1:]:
        assert host_config(lab, name)["token"] == agent_token
        # no file on an agent holds the server password (searched with the pattern on stdin, never in argv)
        search = "grep -rlF -f /dev/stdin /etc /root /tmp /var/log /var/lib/rancher /usr/local"
        found = lab.exec(name, search, input=server_pw + "\n", check=False)
        assert found.returncode == 1 and found.stdout == "", found.stdout
        assert "/etc/rancher/k3s/config.yaml" in lab.exec(name, search, input=agent_pw + "\n").stdout.split()


def test_a_recreated_cluster_is_noticed_and_bootstrapped_with_the_sites_secrets(lab, site, state, site_state):
    before = passwords(site_state)
    old_ca = (site_state / "cluster-ca").read_text().strip()
    lab.reimage("edge-1")  # every server fresh (a re-imaged plant); the agents keep their old cluster's config
    planned = json_result(kit("edge.plan", "--site", str(site), "--json"))
    assert planned["edge-1"]["changed"][0].startswith("new-cluster: the site's cluster is gone")
    done, hosts = bootstrap(site, state)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "new-cluster" in hosts["edge-1"]["changed"]
    assert all(hosts[n]["changed"] == ["config", "install"] for n in HOSTS[1:])  # new agent token, restarted
    assert ready_nodes(lab) == set(HOSTS)
    assert passwords(site_state) == before
    new_ca = (site_state / "cluster-ca").read_text().strip()
    assert new_ca != old_ca and host_config(lab, "edge-2")["token"].startswith(f"K10{new_ca}::node:")


def test_a_reimaged_host_whose_name_the_cluster_knows_is_readmitted(lab, site, state):
    lab.reimage("edge-3")  # a new node password; the cluster still has node edge-3 and its password secret
    done, hosts = bootstrap(site, state)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "readmit" in hosts["edge-3"]["changed"] and "readmit" not in hosts["edge-2"]["changed"]
    assert ready_nodes(lab) == set(HOSTS)


def test_a_reimaged_host_refused_for_its_node_password_is_readmitted(lab, site, state, tmp_path):
    # re-imaged, and it already tried to join once: it has a node password the cluster does not know
    lab.reimage("edge-4")
    lab.exec("edge-4", "mkdir -p /etc/rancher/node && echo other-image > /etc/rancher/node/password")
    quick = lab_site(lab, tmp_path, **{"k3s.joinTimeout": 6})
    done, hosts = bootstrap(quick, state, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "readmit" in hosts["edge-4"]["changed"]
    assert ready_nodes(lab) == set(HOSTS)


def test_an_agent_offered_a_token_of_another_cluster_fails_fast_saying_so(lab, site, state, tmp_path, site_state):
    path = host_file(lab, "edge-1", "/var/lib/rancher/k3s/server/agent-token")
    real = path.read_text()
    path.write_text("K10" + "0" * 64 + real.strip()[67:] + "\n")  # another cluster's CA hash, the right password
    try:
        quick = lab_site(lab, tmp_path, **{"k3s.joinTimeout": 6})
        done, hosts = bootstrap(quick, state, "--hosts", "edge-3", timeout=240)
    finally:
        path.write_text(real)
    assert done.returncode == 1
    error = hosts["edge-3"]["error"]
    assert "k3s-agent is not ready after 6 s: token rejected" in error and "token CA hash does not match" in error
    for secret in passwords(site_state):
        assert secret not in done.stdout + done.stderr
    done, hosts = bootstrap(site, state)
    assert done.returncode == 0 and ready_nodes(lab) == set(HOSTS), done.stdout


def test_an_unreachable_server_fails_fast_naming_it(lab, site, state, tmp_path, site_state):
    nowhere = lab.subnet.rsplit(".", 1)[0] + ".250"
    quick = lab_site(lab, tmp_path, apiEndpoint=nowhere, **{"k3s.joinTimeout": 6})
    done, hosts = bootstrap(quick, state, "--hosts", "edge-2", timeout=240)
    assert done.returncode == 1
    assert f"k3s-agent is not ready after 6 s: server unreachable (https://{nowhere}:6443)" in hosts["edge-2"]["error"]
    for secret in passwords(site_state):
        assert secret not in done.stdout + done.stderr
    done, hosts = bootstrap(site, state)
    assert done.returncode == 0 and ready_nodes(lab) == set(HOSTS), done.stdout


def test_a_unit_disabled_behind_the_kits_back_is_enabled_again(lab, site, state):
    lab.exec("edge-2", "systemctl disable k3s-agent")
    planned = json_result(kit("edge.plan", "--site", str(site), "--json"))
    assert planned["edge-2"]["changed"] == ["install: enable k3s-agent (it would not start after a reboot)"]
    before = all_starts(lab)
    done, hosts = bootstrap(site, state)
    assert done.returncode == 0, done.stderr
    assert hosts["edge-2"]["changed"] == ["install"] and all(hosts[n]["changed"] == [] for n in HOSTS if n != "edge-2")
    assert lab.exec("edge-2", "systemctl is-enabled k3s-agent", check=False).returncode == 0
    assert all_starts(lab) == before  # it was running: enabled, not restarted
    lab.exec("edge-2", "reboot")  # the host comes back with k3s
    lab.exec("edge-2", "for i in $(seq 120); do systemctl is-active --quiet k3s-agent && exit 0; sleep 0.5; done; "
                       "exit 1")
    done, hosts = bootstrap(site, state)
    assert done.returncode == 0 and hosts["edge-2"]["changed"] == []


def test_a_stopped_unit_is_started(lab, site, state):
    lab.exec("edge-4", "systemctl stop k3s-agent")
    done, hosts = bootstrap(site, state)
    assert done.returncode == 0, done.stderr
    assert hosts["edge-4"]["changed"] == ["install"]
    assert lab.exec("edge-4", "systemctl is-active k3s-agent", check=False).returncode == 0


def test_plan_names_the_nodes_metallbs_speaker_cannot_run_on(lab, site, tmp_path):
    document = yaml.safe_load(site.read_text())
    document["hosts"][3]["taints"] = ["dedicated=ml:NoSchedule"]
    document["hosts"][2]["taints"] = ["soft=yes:PreferNoSchedule"]
    tainted = tmp_path / "tainted.yaml"
    tainted.write_text(yaml.safe_dump(document))
    done = kit("edge.plan", "--site", str(tainted), "--json")
    assert "metallb: no speaker on edge-4 (taint dedicated=ml:NoSchedule is not tolerated" in done.stderr
    assert "edge-3" not in done.stderr


def test_architectures_as_hosts_report_them(lab, site, tmp_path):
    aliased = lab_site(lab, tmp_path, "aliased.yaml")
    document = yaml.safe_load(aliased.read_text())
    document["hosts"][1]["arch"], document["hosts"][2]["arch"] = "amd64", "x86_64"
    document["hosts"][3]["arch"] = "aarch64"
    aliased.write_text(yaml.safe_dump(document))
    hosts = json_result(kit("edge.plan", "--site", str(aliased), "--json"))
    assert hosts["edge-2"]["status"] == "ok" and hosts["edge-3"]["status"] == "ok"
    assert "arch is x86_64, the inventory says arm64 (aarch64)" in hosts["edge-4"]["error"]
