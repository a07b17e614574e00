"""azp-probe on crafted states: a stuck start-up, a silent entrypoint, a dead listener."""
import os
import subprocess
import time

import pytest

from tests.agents_runtime.conftest import GOOD_TOKEN
from tests.agents_runtime.entrypoint_harness import AgentContainer


@pytest.fixture
def box():
    made = AgentContainer("http://127.0.0.1:9/contoso", GOOD_TOKEN)
    yield made
    made.stop()


def _write(path, text="", age=0.0):
    path.write_text(text)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_fresh_start_is_live_but_not_ready(box):
    _write(box.state / "phase", "registering\n")
    assert box.probe("live").returncode == 0
    assert box.probe("ready").returncode == 1


def test_a_registration_stuck_past_the_timeout_is_not_live(box):
    _write(box.state / "phase", "registering\n", age=400)
    result = box.probe("live")
    assert result.returncode == 1 and "stuck: phase registering" in result.stderr


def test_listening_with_a_fresh_heartbeat_and_a_live_listener_is_live_and_ready(box, sleeper):
    _write(box.state / "phase", "listening\n")
    _write(box.state / "heartbeat")
    _write(box.state / "listener.pid", f"{sleeper}\n")
    box.home.mkdir()
    _write(box.home / ".agent", '{"agentId": 1}')
    assert box.probe("live").returncode == 0
    assert box.probe("ready").returncode == 0


def test_a_stale_heartbeat_is_not_live(box, sleeper):
    _write(box.state / "phase", "listening\n")
    _write(box.state / "heartbeat", age=120)
    _write(box.state / "listener.pid", f"{sleeper}\n")
    assert "no heartbeat for" in box.probe("live").stderr


def test_a_listener_without_a_registration_is_not_ready(box, sleeper):
    _write(box.state / "phase", "listening\n")
    _write(box.state / "heartbeat")
    _write(box.state / "listener.pid", f"{sleeper}\n")
    assert "the agent is not registered" in box.probe("ready").stderr


def test_a_dead_listener_is_neither_live_nor_ready(box):
    _write(box.state / "phase", "listening\n")
    _write(box.state / "heartbeat")
    _write(box.state / "listener.pid", "999999\n")
    box.home.mkdir()
    _write(box.home / ".agent", '{"agentId": 1}')
    assert "the listener is gone" in box.probe("live").stderr
    assert "listener is not running" in box.probe("ready").stderr


def test_reconnecting_or_draining_is_not_ready(box, sleeper):
    for phase in ("reconnecting", "draining"):
        _write(box.state / "phase", f"{phase}\n")
        assert f"phase is {phase}" in box.probe("ready").stderr


def test_unknown_probe_kind_is_a_usage_error(box):
    assert box.probe("healthy").returncode == 2
