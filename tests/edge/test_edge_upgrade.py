"""Changing a lab site's k3s pin upgrades it safely: the path refused when it skips a minor (exit 2, nothing
changed), edge.plan's order, a snapshot first, the server before the agents, agents in batches each cordoned, drained
and checked to report the new version, then uncordoned; a drain that times out or an upload that fails stops the
run with the rest untouched, and a re-run continues."""
import pytest
import yaml

from lab.lifecycle.inventory import K3S_VERSION, METALLB_VERSION
from lab.releases.artifacts import build_bundle

from helpers import json_result, kit, kit_state_under, lab_site
from lab_checks import host_file, kubectl_json, ready_nodes, ready_nodes_or_none

SHARED_STATE = True  # one kit state for the module: re-runs keep the site's tokens, as on an operator's machine

HOSTS = ["edge-1", "edge-2", "edge-3", "edge-4"]
AGENTS = HOSTS[1:]
MAJOR_MINOR, PATCH = K3S_VERSION.split("+")[0].rsplit(".", 1)
NEXT = f"{MAJOR_MINOR}.{int(PATCH) + 1}+k3s1"


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=4, servers=1)


@pytest.fixture(scope="module")
def next_bundle(tmp_path_factory):
    return build_bundle(tmp_path_factory.mktemp("next") / "bundle", NEXT, METALLB_VERSION)


@pytest.fixture(scope="module")
def sites(lab, next_bundle, tmp_path_factory):
    """Inventories pinning the lab's release and the next patch (with its own bundle)."""
    directory = tmp_path_factory.mktemp("sites")
    return {K3S_VERSION: lab.site_file,
            NEXT: lab_site(lab, directory, "next.yaml", bundle=str(next_bundle), **{"k3s.version": NEXT})}


def bootstrap(site, state, *extra):
    done = kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(state / "kubeconfig"), *extra)
    return done, json_result(done) if done.stdout.strip() else {}


def versions(lab) -> dict[str, str]:
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in kubectl_json(lab, "get nodes")["items"]}


def cordoned(lab) -> set[str]:
    return {n["metadata"]["name"] for n in kubectl_json(lab, "get nodes")["items"] if n["spec"].get("unschedulable")}


def last_starts(lab) -> dict[str, float]:
    """When each host's k3s unit last started (the stand-in systemd's <unit>.starts: '<epoch> <pid>' lines)."""
    out = {}
    for name in HOSTS:
        unit = "k3s" if lab.host(name).role == "server" else "k3s-agent"
        lines = host_file(lab, name, f"/var/log/lab-units/{unit}.starts").read_text().splitlines()
        out[name] = float(lines[-1].split()[0])
    return out


def snapshots(lab) -> list[str]:
    directory = host_file(lab, "edge-1", "/var/lib/rancher/k3s/server/db/snapshots")
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def binaries(lab) -> dict[str, bytes]:
    return {n: host_file(lab, n, "/usr/local/bin/k3s").read_bytes() for n in HOSTS}


def apply(lab, *docs):
    lab.exec("edge-1", "k3s kubectl apply -f -", input=yaml.safe_dump_all(docs))


def workload(name, replicas, min_available, node=None):
    spec = {"containers": [{"name": "app", "image": "registry.lab/app:1"}]}
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
             "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                      "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}},
            {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": "default"},
             "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": name}}}}]


def pods(lab, app) -> dict[str, str]:
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in kubectl_json(lab, "get pods -n default")["items"]
            if p["metadata"].get("labels", {}).get("app") == app}


@pytest.fixture
def at(lab, sites, state):
    """The site converged on a version (bootstrapped to it here when a test runs alone)."""
    def converge(version):
        if ready_nodes_or_none(lab) != set(HOSTS) or set(versions(lab).values()) != {version} or cordoned(lab):
            done, _ = bootstrap(sites[version], state)
            assert done.returncode == 0, done.stdout + done.stderr
        return lab
    return converge


def test_a_pin_that_skips_a_minor_is_refused_with_the_path_and_nothing_changes(at, lab, state, tmp_path):
    at(K3S_VERSION)
    major, minor = MAJOR_MINOR.lstrip("v").split(".")
    skipping = f"v{major}.{int(minor) + 3}.0+k3s1"
    bundle = build_bundle(tmp_path / "bundle", skipping, METALLB_VERSION)
    site = lab_site(lab, tmp_path, bundle=str(bundle), **{"k3s.version": skipping})
    before, started, saved = binaries(lab), last_starts(lab), snapshots(lab)
    for done in (kit("edge.bootstrap", "--site", str(site), "--kubeconfig", str(state / "kubeconfig")),
                 kit("edge.plan", "--site", str(site))):
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"{site}: k3s.version: {skipping} skips minor versions for " in done.stderr
        assert f"edge-1 ({K3S_VERSION})" in done.stderr and f"edge-4 ({K3S_VERSION})" in done.stderr
        assert (f"pin the newest patch of v{major}.{int(minor) + 1}, then v{major}.{int(minor) + 2} first "
                f"(edge.bootstrap each), then {skipping}") in done.stderr
        assert "Traceback" not in done.stderr
    assert binaries(lab) == before and last_starts(lab) == started
    assert set(versions(lab).values()) == {K3S_VERSION} and not cordoned(lab)
    assert snapshots(lab) == saved  # refused before the snapshot


def test_a_pin_a_minor_behind_the_nodes_is_refused_as_no_rollback(at, lab, state, tmp_path):
    at(K3S_VERSION)
    major, minor = MAJOR_MINOR.lstrip("v").split(".")
    older = f"v{major}.{int(minor) - 1}.9+k3s1"
    site = lab_site(lab, tmp_path, bundle=str(build_bundle(tmp_path / "bundle", older, METALLB_VERSION)),
                    **{"k3s.version": older})
    before = binaries(lab)
    done = kit("edge.bootstrap", "--site", str(site), "--kubeconfig", str(state / "kubeconfig"))
    assert done.returncode == 2
    assert f"{site}: k3s.version: {older} is a minor behind edge-1 ({K3S_VERSION})" in done.stderr
    assert "docs.k3s.io/upgrades/roll-back" in done.stderr
    assert binaries(lab) == before and set(versions(lab).values()) == {K3S_VERSION}


def test_plan_shows_the_upgrade_path_and_changes_nothing(at, lab, sites):
    at(K3S_VERSION)
    before = binaries(lab)
    done = kit("edge.plan", "--site", str(sites[NEXT]), "--json", "--batch", "2")
    hosts = json_result(done)
    step = f"upgrade: {K3S_VERSION} -> {NEXT}"
    assert hosts["edge-1"]["changed"][:2] == ["snapshot: the datastore, before any host is upgraded",
                                              f"{step} (server 1 of 1, one at a time)"]
    for name, batch in (("edge-2", 1), ("edge-3", 1), ("edge-4", 2)):
        assert hosts[name]["changed"][0] == f"{step} (agent batch {batch} of 2, after the servers; cordon, drain)"
    assert binaries(lab) == before


def test_an_upgrade_goes_server_first_then_agents_in_batches_each_drained(at, lab, sites, state):
    at(K3S_VERSION)
    apply(lab, *workload("web", 3, 2))
    before_pods = pods(lab, "web")
    started = last_starts(lab)
    done, hosts = bootstrap(sites[NEXT], state, "--batch", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert hosts["edge-1"]["changed"][:3] == ["snapshot", "artifacts", "install"] and "upgrade" in hosts["edge-1"]["changed"]
    assert all(hosts[n]["changed"] == ["drain", "artifacts", "install", "upgrade", "uncordon"] for n in AGENTS)
    assert versions(lab) == dict.fromkeys(HOSTS, NEXT) and ready_nodes(lab) == set(HOSTS) and not cordoned(lab)
    after = last_starts(lab)
    assert all(after[n] > started[n] for n in HOSTS)  # every host restarted onto the new binary...
    assert after["edge-1"] < min(after["edge-2"], after["edge-3"])  # ...the server first
    assert max(after["edge-2"], after["edge-3"]) < after["edge-4"]  # batch 1 (edge-2, edge-3) before batch 2
    evicted = [p for p, node in before_pods.items() if node in AGENTS]
    now = pods(lab, "web")
    assert evicted and not set(evicted) & set(now)  # the agents' pods were evicted, their Deployment made new ones
    assert len(now) == 3 and all(now.values())
    assert [n for n in snapshots(lab) if n.startswith(f"pre-upgrade-{NEXT.replace('+', '-')}-edge-1-")]


def test_a_drain_that_times_out_stops_the_run_there_and_a_rerun_continues(at, lab, sites, state):
    at(NEXT)
    apply(lab, *workload("db", 1, 1, node="edge-3"))  # its budget allows no disruption
    before, started = binaries(lab), last_starts(lab)
    done, hosts = bootstrap(sites[K3S_VERSION], state, "--drain-timeout", "3")
    assert done.returncode == 1
    assert hosts["edge-1"]["status"] == hosts["edge-2"]["status"] == "changed"
    assert hosts["edge-3"]["status"] == "failed"
    error = hosts["edge-3"]["error"]
    assert error.startswith("drain: draining node edge-3 failed (exit 1): ") and "global timeout reached: 3s" in error
    assert error.endswith(f"; edge-3 is uncordoned again, still on {NEXT}")
    assert hosts["edge-4"]["status"] == "failed" and hosts["edge-4"]["error"] == (
        f"upgrade: not started, it stopped at edge-3 (agent batch 2 of 3); still on {NEXT}; "
        "re-run edge.bootstrap to continue")
    assert versions(lab) == {"edge-1": K3S_VERSION, "edge-2": K3S_VERSION, "edge-3": NEXT, "edge-4": NEXT}
    db_pods = pods(lab, "db")
    assert not cordoned(lab) and list(db_pods.values()) == ["edge-3"]
    now = last_starts(lab)
    assert {n: now[n] == started[n] for n in ("edge-3", "edge-4")} == {"edge-3": True, "edge-4": True}
    assert {n: binaries(lab)[n] == before[n] for n in ("edge-3", "edge-4")} == {"edge-3": True, "edge-4": True}
    lab.exec("edge-1", "k3s kubectl delete pdb -n default db")
    done, hosts = bootstrap(sites[K3S_VERSION], state, "--drain-timeout", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert hosts["edge-1"]["changed"] == ["snapshot"] and hosts["edge-2"]["changed"] == []  # already there
    assert hosts["edge-3"]["changed"] == hosts["edge-4"]["changed"] == ["drain", "artifacts", "install", "upgrade",
                                                                         "uncordon"]
    assert versions(lab) == dict.fromkeys(HOSTS, K3S_VERSION) and not cordoned(lab)
    assert not set(pods(lab, "db")) & set(db_pods)  # evicted this time
    lab.exec("edge-1", "k3s kubectl delete deployment -n default db")


def test_an_upgrade_failing_on_the_second_agent_leaves_the_rest_untouched_and_a_rerun_continues(at, lab, sites,
                                                                                                   state):
    at(K3S_VERSION)
    lab.exec("edge-3", "mkdir -p /usr/local/bin/.k3s.kit-new")  # where the upload is staged: installing it fails
    try:
        before, started = binaries(lab), last_starts(lab)
        done, hosts = bootstrap(sites[NEXT], state)
    finally:
        lab.exec("edge-3", "rm -rf /usr/local/bin/.k3s.kit-new")
    assert done.returncode == 1
    assert [hosts[n]["status"] for n in HOSTS] == ["changed", "changed", "failed", "failed"]
    assert hosts["edge-3"]["error"].startswith("artifacts: installing /usr/local/bin/k3s failed (exit ")
    assert hosts["edge-3"]["error"].endswith("; edge-3 is left cordoned (re-run edge.bootstrap to continue)")
    assert hosts["edge-4"]["error"].startswith("upgrade: not started, it stopped at edge-3 (agent batch 2 of 3);")
    assert versions(lab) == {"edge-1": NEXT, "edge-2": NEXT, "edge-3": K3S_VERSION, "edge-4": K3S_VERSION}
    assert cordoned(lab) == {"edge-3"}
    assert binaries(lab)["edge-4"] == before["edge-4"] and last_starts(lab)["edge-4"] == started["edge-4"]
    assert binaries(lab)["edge-3"] == before["edge-3"]
    done, hosts = bootstrap(sites[NEXT], state)
    assert done.returncode == 0, done.stdout + done.stderr
    assert hosts["edge-2"]["changed"] == [] and hosts["edge-3"]["changed"][0] == "drain"
    assert versions(lab) == dict.fromkeys(HOSTS, NEXT) and not cordoned(lab) and ready_nodes(lab) == set(HOSTS)


def test_an_ha_site_upgrades_its_servers_one_at_a_time_after_an_etcd_snapshot(lab_factory, next_bundle, tmp_path,
                                                                               monkeypatch):
    kit_state_under(tmp_path, monkeypatch)  # a site of its own (both labs are named lab)
    ha = lab_factory(hosts=4, servers=3)
    done, _ = bootstrap(ha.site_file, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    started = last_starts(ha)
    done, hosts = bootstrap(lab_site(ha, tmp_path, "next.yaml", bundle=str(next_bundle), **{"k3s.version": NEXT}),
                            tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all("upgrade" in hosts[n]["changed"] and "drain" not in hosts[n]["changed"] for n in HOSTS[:3])
    assert hosts["edge-4"]["changed"] == ["drain", "artifacts", "install", "upgrade", "uncordon"]
    assert versions(ha) == dict.fromkeys(HOSTS, NEXT) and ready_nodes(ha) == set(HOSTS)
    after = last_starts(ha)
    assert all(after[n] > started[n] for n in HOSTS)
    assert after["edge-1"] < after["edge-2"] < after["edge-3"] < after["edge-4"]  # one server at a time, the agent last
    etcd = [n for n in snapshots(ha) if n.startswith(f"pre-upgrade-{NEXT.replace('+', '-')}-edge-1-")]
    assert etcd and not etcd[0].endswith(".sqlite.tar.gz")  # k3s etcd-snapshot save, not a copy
