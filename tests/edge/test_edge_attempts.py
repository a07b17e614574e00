"""Connection attempts are shown as they happen (attempt n of m, the longest the rest can take) and the final
error says how many were made: against a local port nothing listens on (refused at once)."""
import socket
from pathlib import Path

from edge_hosts.access.ssh import TransportError
from edge_hosts.engine.fanout import Engine
from edge_hosts.engine.progress import Progress
from edge_hosts.inventory.model import Inventory


class Recorder(Progress):
    """A quiet live view that keeps every state it was given."""

    def __init__(self, hosts):
        super().__init__(hosts, enabled=False)
        self.seen: list[tuple[str, str, str]] = []

    def update(self, host, step, state="running"):
        self.seen.append((host, step, state))
        super().update(host, step, state)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def inventory(tmp_path: Path, retries: int) -> Inventory:
    return Inventory.model_validate({
        "site": "attempts", "source": tmp_path / "site.yaml",
        "ssh": {"user": "root", "keyFile": str(tmp_path / "id"), "knownHosts": str(tmp_path / "known_hosts"),
                "port": closed_port(), "retries": retries, "connectTimeout": 2},
        "k3s": {"version": "v1.37.2+k3s1", "installScriptSha256": "a" * 64},
        "metallb": {"version": "v0.16.1", "addresses": ["127.0.0.200-127.0.0.210"], "manifestSha256": "b" * 64},
        "nodeSubnet": "127.0.0.0/24",
        "hosts": [{"name": "h0", "address": "127.0.0.1", "role": "server", "arch": "x86_64"}]})


def test_each_attempt_is_shown_with_its_number_and_the_time_left(tmp_path):
    progress = Recorder(["h0"])
    with Engine(inventory(tmp_path, retries=2), ["h0"], 1, progress) as engine:
        engine.connect_and_probe(engine.contexts["h0"])
        error = engine.contexts["h0"].error
    attempts = [state for _, step, state in progress.seen if step == "connect" and state.startswith("connecting")]
    # 3 attempts of at most 2 s each, 0.5 s and 1 s of backoff between them; one round of them, not two
    assert attempts == ["connecting: attempt 1 of 3, up to 8 s left", "connecting: attempt 2 of 3, up to 5 s left",
                        "connecting: attempt 3 of 3, up to 2 s left"]
    assert error.startswith("connect: cannot reach 127.0.0.1:") and error.endswith("(attempt 3 of 3)")


def test_a_reconnect_inside_a_step_shows_under_that_step(tmp_path):
    progress = Recorder(["h0"])
    with Engine(inventory(tmp_path, retries=0), ["h0"], 1, progress) as engine:
        ctx = engine.contexts["h0"]
        ctx.step = "artifacts"
        try:
            ctx.session.connect()
        except TransportError as err:
            message = str(err)
    assert ("h0", "artifacts", "connecting: attempt 1 of 1, up to 2 s left") in progress.seen
    assert message.endswith("(attempt 1 of 1)")
