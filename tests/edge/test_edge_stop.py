"""Stopping a run, unit-level: a real SIGINT to this process while a step runs (engine/interrupt.py) lets that
step finish, starts no other, and ends with each host's result saying where it stopped; --json prints them,
exit 130."""
import json
import os
import signal
import threading
import time

import pytest
from invoke import Exit

from edge_hosts.engine.fanout import Engine
from edge_hosts.engine.interrupt import interruptible
from edge_hosts.engine.progress import Progress
from edge_hosts.tasks.inputs import finish
from test_edge_attempts import inventory

HOSTS = ["h0"]


@pytest.fixture
def ctrl_c():
    """Python's own SIGINT handler, as in a terminal (a background job, as CI may run the suite, starts with
    SIGINT ignored), and a thread started before the run with SIGINT unblocked, as the site lock's heartbeat is:
    the signal may land on it at any moment, even while the run's thread starts."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    stop = threading.Event()
    bystander = threading.Thread(target=stop.wait, daemon=True)
    bystander.start()
    yield
    stop.set()
    bystander.join()
    signal.signal(signal.SIGINT, previous)


def test_a_sigint_lets_the_running_step_finish_and_starts_no_other(tmp_path, capsys, ctrl_c):
    ran = []

    def interrupted_step(ctx):
        os.kill(os.getpid(), signal.SIGINT)  # as a terminal's Ctrl-C: to the process, taken by the main thread
        time.sleep(0.5)
        ran.append("s1")
        return True

    with Engine(inventory(tmp_path, retries=0), HOSTS, 1, Progress(HOSTS, enabled=False)) as engine:
        ctx = engine.contexts["h0"]

        def work():
            engine.step(ctx, "s1", interrupted_step)
            engine.step(ctx, "s2", lambda c: ran.append("s2") or True)
            return engine.results(HOSTS)

        results, interrupted = interruptible(engine, work, HOSTS)
    assert interrupted and ran == ["s1"]
    assert [(r.status, r.changed, r.error) for r in results] == [
        ("stopped", ["s1"], "stopped before s2: interrupted (Ctrl-C)")]
    assert "stopping: no further step starts" in capsys.readouterr().err
    with pytest.raises(Exit) as ended:
        finish("attempts", results, as_json=True, interrupted=True)
    assert ended.value.code == 130 and "Run the same command again to continue" in ended.value.message
    printed = json.loads(capsys.readouterr().out)
    assert printed["hosts"][0]["status"] == "stopped"


def test_without_an_interrupt_the_work_s_own_error_is_raised(tmp_path):
    with Engine(inventory(tmp_path, retries=0), HOSTS, 1, Progress(HOSTS, enabled=False)) as engine:
        with pytest.raises(ZeroDivisionError):
            interruptible(engine, lambda: 1 / 0, HOSTS)
