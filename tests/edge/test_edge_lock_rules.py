"""The site lock here, unit-level: a holder is named, a second taker is refused, a dead holder's lock is taken
over (the kernel let go of it), and whether a holder is dead is judged by pid and its start time."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from edge_hosts.access.sitelock import Holder, LocalLock, SiteBusy
from helpers import REPO

HOLD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from edge_hosts.access.sitelock import Holder, LocalLock
LocalLock("t1").acquire(Holder.me("edge.held"))
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_taker_is_refused_naming_the_holder_and_takes_it_once_it_is_free(private_state):
    first, second = LocalLock("t1"), LocalLock("t1")
    holder = Holder.me("edge.bootstrap")
    first.acquire(holder)
    assert first.path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SiteBusy, match=rf"edge.bootstrap by .*@{socket.gethostname()}, pid {os.getpid()}, since "):
        second.acquire(Holder.me("edge.reset"))
    first.release()
    second.acquire(Holder.me("edge.reset"))
    assert json.loads(second.path.read_text())["task"] == "edge.reset"
    second.release()
    assert second.path.read_text() == ""


def test_the_lock_of_a_killed_holder_is_taken_over(private_state):
    held = subprocess.Popen([sys.executable, "-c", HOLD, str(REPO)], stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout.readline() == "locked\n"
        with pytest.raises(SiteBusy, match=f"edge.held by .*, pid {held.pid}"):
            LocalLock("t1").acquire(Holder.me("edge.taker"))
    finally:
        held.send_signal(signal.SIGKILL)
        held.communicate()
    lock = LocalLock("t1")
    assert json.loads(lock.path.read_text())["pid"] == held.pid  # the dead run's file is still there
    lock.acquire(Holder.me("edge.taker"))
    assert json.loads(lock.path.read_text())["task"] == "edge.taker"
    lock.release()


def test_a_holder_is_dead_here_when_its_pid_is_gone_or_belongs_to_another_process():
    me = Holder.me("edge.bootstrap")
    assert not me.dead_here()
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert Holder(me.host, me.user, gone.pid, me.started, me.task, me.pid_start).dead_here()
    assert Holder(me.host, me.user, me.pid, me.started, me.task, me.pid_start + 1).dead_here()  # a reused pid
    assert not Holder("another-machine", me.user, gone.pid, me.started, me.task, 0).dead_here()
