"""One run per site, with real concurrent ./kit runs against a lab site: a second run exits 2 at once naming the
holder, from this machine (the lock in the site's state directory) and from another (the lock on the first
server); a run that died is taken over at once, and a server lock whose holder froze lapses after its lease."""
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from edge_hosts.access.sitelock import REMOTE_DIR
from helpers import REPO, json_result, kit, lab_site
from lab_checks import host_file, ready_nodes_or_none

SHARED_STATE = True


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=2, servers=1)


def start(lab, state, *args: str) -> subprocess.Popen:
    """`./kit edge.bootstrap` on the lab site in the background, its kit state under `state`."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(state)}
    return subprocess.Popen([str(REPO / "kit"), "edge.bootstrap", "--site", str(lab.site_file), "--json",
                             "--kubeconfig", str(state / "kubeconfig"), *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def server_holder(lab) -> dict | None:
    path = host_file(lab, "edge-1", f"{REMOTE_DIR}/site.lock")
    text = path.read_text().strip() if path.exists() else ""
    return json.loads(text) if text else None


def wait_holding(lab, run: subprocess.Popen) -> dict:
    """Until `run` holds the site's lock on the first server (it may not end first)."""
    while not (server_holder(lab) or {}).get("pid") == run.pid:
        assert run.poll() is None, run.communicate()
        time.sleep(0.05)
    return server_holder(lab)


def second_run(lab, state, tmp_path) -> subprocess.CompletedProcess:
    return kit("edge.bootstrap", "--site", str(lab.site_file), "--kubeconfig", str(tmp_path / "kubeconfig"),
               env={"XDG_CONFIG_HOME": str(state)}, timeout=120)


def test_a_second_run_exits_2_naming_the_holder_here_and_on_the_server(lab, state, tmp_path):
    first = start(lab, state)
    holder = wait_holding(lab, first)
    os.kill(first.pid, signal.SIGSTOP)  # it holds both locks and cannot end while the others try
    try:
        here = second_run(lab, state, tmp_path)  # the same machine and kit state: the local lock
        elsewhere = second_run(lab, tmp_path / "other-machine", tmp_path)  # another kit state: the server's lock
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    named = f"edge.bootstrap by {holder['user']}@{holder['host']}, pid {first.pid}, since {holder['started']}"
    for done in (here, elsewhere):
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert f"site lab is being changed by another run: {named}" in done.stderr
        assert "Nothing was done" in done.stderr
    assert f"(lock {state / 'mlops-edge-kit/sites/lab/run.lock'})" in here.stderr
    assert f"(lock {REMOTE_DIR}/site.lock on edge-1;" in elsewhere.stderr
    assert not (tmp_path / "kubeconfig").exists()
    assert server_holder(lab) is None  # let go when the run ended


def test_the_lock_of_a_killed_run_is_taken_over_and_the_rerun_converges(lab, state, tmp_path):
    lab.exec("edge-2", "rm -f /usr/local/bin/k3s-install.sh")  # something for the runs to do
    first = start(lab, state)
    wait_holding(lab, first)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    done = kit("edge.bootstrap", "--site", str(lab.site_file), "--json", "--kubeconfig", str(state / "kubeconfig"),
               env={"XDG_CONFIG_HOME": str(state)}, timeout=600)
    assert done.returncode == 0, done.stderr
    assert all(h["status"] in ("ok", "changed") for h in json_result(done).values())
    assert ready_nodes_or_none(lab) == {"edge-1", "edge-2"}


FROZEN_HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from edge_hosts.access.sitelock import Holder, RemoteLock
from edge_hosts.inventory.load import load_inventory
lock = RemoteLock(load_inventory(sys.argv[2]), lease_s=2, heartbeat_s=0.5)
lock.acquire(Holder.me("edge.frozen"))
print("locked", flush=True)
time.sleep(600)
"""


def test_a_frozen_holder_keeps_the_lock_until_its_lease_runs_out(lab, tmp_path):
    """A holder that stops (its machine vanished, the connection left open) no longer sends heartbeats: the
    server lets go after the lease, never before, and the next run takes the lock."""
    from edge_hosts.access.sitelock import Holder, RemoteLock, SiteBusy
    from edge_hosts.inventory.load import load_inventory

    holder = subprocess.Popen([sys.executable, "-c", FROZEN_HOLDER, str(REPO), str(lab.site_file)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        os.kill(holder.pid, signal.SIGSTOP)
        taker = RemoteLock(load_inventory(str(lab.site_file)), lease_s=2, heartbeat_s=0.5)
        with pytest.raises(SiteBusy, match=f"edge.frozen by .*, pid {holder.pid}, since"):
            taker.acquire(Holder.me("edge.taker"))  # stopped is not dead: its pid is there
        for _ in range(100):
            try:
                taker.acquire(Holder.me("edge.taker"))
                break
            except SiteBusy:
                time.sleep(0.2)
        assert server_holder(lab)["task"] == "edge.taker"
        taker.release()
        assert server_holder(lab) is None
    finally:
        holder.kill()
        holder.communicate()


def test_an_unreachable_first_server_shows_the_lock_attempts_and_changes_nothing(lab, state, tmp_path):
    site = lab_site(lab, tmp_path, **{"ssh.connectTimeout": 1, "ssh.retries": 1})
    listing = "ls -laR /etc/rancher /usr/local/bin 2>&1"
    before = lab.exec("edge-2", listing, check=False).stdout
    lab.cut_link("edge-1")
    try:
        done = kit("edge.reset", "--site", str(site), "--yes", env={"XDG_CONFIG_HOME": str(state)}, timeout=120)
    finally:
        lab.restore_link("edge-1")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "edge.reset: taking the site's lock on edge-1: attempt 2 of 2, up to 1 s left" in done.stderr
    assert "cannot take the site's lock on edge-1: cannot reach " in done.stderr
    assert "(attempt 2 of 2). Nothing was done" in done.stderr
    assert lab.exec("edge-2", listing, check=False).stdout == before  # no host was changed


def test_a_run_whose_server_lock_lapses_is_stopped(lab, tmp_path):
    """Heartbeats that never reach the server (a link that swallows them): the server lets go after the lease,
    the run is told and starts no further step; its hosts end as stopped, which exits 1."""
    import threading

    from edge_hosts.access.sitelock import Holder, RemoteLock
    from edge_hosts.engine.fanout import Engine
    from edge_hosts.engine.progress import Progress
    from edge_hosts.inventory.load import load_inventory
    from edge_hosts.tasks.inputs import finish
    from invoke import Exit

    inventory = load_inventory(str(lab.site_file))
    lock = RemoteLock(inventory, lease_s=1, heartbeat_s=0.3)
    lock.acquire(Holder.me("edge.lapsing"))
    lock._channel.sendall = lambda data: None  # noqa: SLF001 - the heartbeats are lost on the way
    lost = threading.Event()
    with Engine(inventory, ["edge-1", "edge-2"], 2, Progress(["edge-1", "edge-2"], enabled=False)) as engine:
        lock.on_lost = lambda reason: (engine.stop(reason), lost.set())
        assert lost.wait(60)
        engine.each(list(engine.contexts.values()), engine.connect_and_probe)
        results = engine.results(["edge-1", "edge-2"])
    lock.release()
    assert {r.status for r in results} == {"stopped"}
    assert all(r.error == "stopped before connect: the site's lock on edge-1 lapsed (no heartbeat reached it for "
               "1 s)" for r in results)
    assert server_holder(lab) is None
    with pytest.raises(Exit) as ended:
        finish("lab", results, as_json=True)
    assert ended.value.code == 1


def test_a_lock_still_held_for_a_run_that_ended_here_is_waited_for_then_taken(lab, state, tmp_path):
    """The server still holds the lock for a run of this machine whose pid is gone (its session not yet closed):
    the next run says so, waits, and takes it once the server lets go (here a flock held 3 s on the server)."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    me = {"host": socket.gethostname(), "user": getpass.getuser(), "pid": ended.pid,
          "started": "2026-12-07T09:00:00+00:00", "task": "edge.bootstrap", "pid_start": 1}
    lock = f"{REMOTE_DIR}/site.lock"
    lab.exec("edge-1", f"mkdir -p {REMOTE_DIR} && printf '%s\\n' '{json.dumps(me)}' > {lock} && "
                       f"(flock {lock} sleep 3 >/dev/null 2>&1 &)")
    while lab.exec("edge-1", f"flock -n {lock} true", check=False).returncode == 0:
        time.sleep(0.05)  # until the stand-in holder has the lock
    done = kit("edge.bootstrap", "--site", str(lab.site_file), "--json", "--kubeconfig", str(state / "kubeconfig"),
               env={"XDG_CONFIG_HOME": str(state)}, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (f"edge.bootstrap: the site's lock on edge-1 is held for a run that has ended (edge.bootstrap by "
            f"{me['user']}@{me['host']}, pid {ended.pid}, since 2026-12-07T09:00:00+00:00); waiting for it to be let go"
            ) in done.stderr
