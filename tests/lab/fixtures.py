"""Pytest fixtures that bring up lab hosts; import them in a conftest.py:

    from tests.lab.fixtures import lab_factory, module_lab_factory  # noqa: F401

`lab_factory(hosts=3, servers=1, timings=None)` returns a running `lab.Lab` whose out_dir is a fresh temporary
directory (site.yaml, known_hosts, id_ed25519 inside); every lab made is taken down afterwards,
also when the test fails.
"""
from contextlib import ExitStack, contextmanager
from pathlib import Path

import paramiko
import pytest

from lab import Lab, cleanup_stale
from lab.lifecycle.packages import ensure_packages


@contextmanager
def running_lab(hosts: int, servers: int, out_dir: Path, timings: dict | None = None):
    """A lab that is up inside the `with` block and down after it."""
    ensure_packages()
    cleanup_stale()
    lab = Lab.up(hosts=hosts, servers=servers, out_dir=out_dir, timings=timings)
    try:
        yield lab
    finally:
        lab.down()


def _factory(tmp_path_factory, stack: ExitStack):
    def make(hosts: int = 3, servers: int = 1, timings: dict | None = None) -> Lab:
        out = tmp_path_factory.mktemp("lab")
        return stack.enter_context(running_lab(hosts, servers, out, timings))
    return make


@pytest.fixture
def lab_factory(tmp_path_factory):
    """Make labs that live for one test."""
    with ExitStack() as stack:
        yield _factory(tmp_path_factory, stack)


@pytest.fixture(scope="module")
def module_lab_factory(tmp_path_factory):
    """Make labs shared by the tests of one module."""
    with ExitStack() as stack:
        yield _factory(tmp_path_factory, stack)


def ssh_client(lab: Lab, host: str, timeout: float = 5) -> paramiko.SSHClient:
    """A paramiko client logged in as root on a lab host, host key checked against known_hosts."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(lab.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(lab.host(host).address, username="root", key_filename=str(lab.key_file),
                   look_for_keys=False, allow_agent=False, timeout=timeout,
                   banner_timeout=timeout, auth_timeout=timeout)
    return client


def ssh_run(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    """Run a command over an open client: (exit status, stdout, stderr)."""
    _, out, err = client.exec_command(command, timeout=30)
    status = out.channel.recv_exit_status()
    return status, out.read().decode(), err.read().decode()
