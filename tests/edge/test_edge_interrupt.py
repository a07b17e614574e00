"""Ctrl-C on a real `./kit edge.bootstrap` against a lab site: the first SIGINT stops the run cleanly (the steps
in progress finish, no other starts), the table shows what was done and where each host stopped, exit 130, and
a re-run continues to a converged site; a second SIGINT cuts the steps in progress off."""
import os
import re
import signal
import subprocess
import time

import pytest

from helpers import REPO, json_result, kit
from lab_checks import host_file, ready_nodes_or_none

HOSTS = {"edge-1", "edge-2", "edge-3"}


@pytest.fixture
def lab(lab_factory):
    return lab_factory(hosts=3, servers=1, timings={"node_ready": 4.0})


def start(lab, kubeconfig, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([str(REPO / "kit"), "edge.bootstrap", "--site", str(lab.site_file), "--kubeconfig",
                             str(kubeconfig)], cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            env={**os.environ, "COLUMNS": "120"})


def wait_for(run: subprocess.Popen, condition) -> None:
    while not condition():
        assert run.poll() is None, run.communicate()
        time.sleep(0.05)


def table(out: str) -> dict[str, tuple[str, str]]:
    """The results table: host -> (status, its changes/reason cell, lines joined)."""
    rows: dict[str, list] = {}
    last = None
    for line in out.splitlines():
        words = line.split()
        if words and words[0] in HOSTS:
            last = words[0]
            rows[last] = [words[1], " ".join(words[2:])]
        elif last and line.startswith(" ") and words:
            rows[last][1] += " " + " ".join(words)
    return {host: (status, cell) for host, (status, cell) in rows.items()}


def rerun_converges(lab, kubeconfig) -> None:
    done = kit("edge.bootstrap", "--site", str(lab.site_file), "--json", "--kubeconfig", str(kubeconfig))
    assert done.returncode == 0, done.stdout + done.stderr
    assert {h["status"] for h in json_result(done).values()} <= {"ok", "changed"}
    assert ready_nodes_or_none(lab) == HOSTS


def test_ctrl_c_stops_cleanly_prints_where_each_host_stopped_and_a_rerun_continues(lab, tmp_path):
    run = start(lab, tmp_path / "kubeconfig")
    wait_for(run, lambda: host_file(lab, "edge-1", "/usr/local/bin/k3s").exists())  # artifacts are going up
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert "stopping: no further step starts; the steps in progress finish first" in err
    assert re.search(r"interrupted \(Ctrl-C\): [1-3] host\(s\) stopped: edge-", err)
    assert "Run the same command again to continue" in err
    rows = table(out)
    assert set(rows) == HOSTS, out  # the table: every host, with its status, what it did and where it stopped
    assert {status for status, _ in rows.values()} <= {"ok", "changed", "stopped"}, out
    stopped = [name for name, (status, _) in rows.items() if status == "stopped"]
    assert stopped and all(re.search(r"stopped (before|after) [a-z-]+: interrupted \(Ctrl-C\)", rows[n][1])
                           for n in stopped), out
    assert all("artifacts" in cell for _, cell in rows.values())  # what was done before the stop is listed
    assert not (tmp_path / "kubeconfig").exists()  # the run stopped before its last step
    rerun_converges(lab, tmp_path / "kubeconfig")


def test_a_second_ctrl_c_cuts_the_running_steps_off(lab, tmp_path):
    errors = tmp_path / "stderr"
    with open(errors, "w") as sink:
        run = start(lab, tmp_path / "kubeconfig", stderr=sink)
        wait_for(run, lambda: lab.exec("edge-1", "systemctl is-active k3s", check=False).returncode == 0)
        run.send_signal(signal.SIGINT)  # while the first server's API and node come up (node_ready: 4 s)
        wait_for(run, lambda: "stopping:" in errors.read_text())
        run.send_signal(signal.SIGINT)
        out, _ = run.communicate(timeout=120)
    err = errors.read_text()
    assert run.returncode == 130, out + err
    assert "Traceback" not in out + err
    rows = table(out)
    assert set(rows) == HOSTS, out
    assert re.search(r"interrupted during [a-z-]+: interrupted \(Ctrl-C\)", rows["edge-1"][1]), out
    assert rows["edge-1"][0] == "stopped"
    rerun_converges(lab, tmp_path / "kubeconfig")
