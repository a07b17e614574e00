"""Failure isolation and retries, unit-level: connection attempts counted against a local SSH server that accepts
on the third try, one host's unexpected exception leaving the others to finish, and online artifacts fetched
again when the host's copy differs from the pin (the download script run here, against file:// URLs)."""
import hashlib
import socket
import subprocess
import threading
from pathlib import Path

import paramiko
import pytest

from edge_hosts.artifacts import Artifact, ArtifactSource, download_script, stale_artifacts
from edge_hosts.engine import Engine
from edge_hosts.inventory import Inventory
from edge_hosts.probe import Facts
from edge_hosts.ssh import HostSession, TransportError


def inventory(tmp_path: Path, port: int = 22, retries: int = 3, hosts: int = 1) -> Inventory:
    return Inventory.model_validate({
        "site": "guards", "source": tmp_path / "site.yaml",
        "ssh": {"user": "root", "keyFile": str(tmp_path / "id_rsa"), "knownHosts": str(tmp_path / "known_hosts"),
                "port": port, "retries": retries, "connectTimeout": 5},
        "k3s": {"version": "v1.37.2+k3s1", "installScriptSha256": "a" * 64},
        "metallb": {"version": "v0.16.1", "addresses": ["127.0.0.200-127.0.0.210"], "manifestSha256": "b" * 64},
        "nodeSubnet": "127.0.0.0/24",
        "hosts": [{"name": f"h{i}", "address": "127.0.0.1", "role": "server" if i == 0 else "agent",
                   "arch": "x86_64"} for i in range(hosts)]})


# -- connection retries ------------------------------------------------------------------------------------------
class _AcceptAnyKey(paramiko.ServerInterface):
    def __init__(self, client_key: paramiko.PKey):
        self.client_key = client_key

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        return paramiko.AUTH_SUCCESSFUL if key == self.client_key else paramiko.AUTH_FAILED


class FlakySshServer:
    """127.0.0.1 SSH server that drops the first `drops` connections before the banner, then speaks SSH."""

    def __init__(self, tmp_path: Path, drops: int):
        self.drops, self.attempts = drops, 0
        self.host_key = paramiko.RSAKey.generate(1024)
        self.client_key = paramiko.RSAKey.generate(1024)
        self.client_key.write_private_key_file(str(tmp_path / "id_rsa"))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        (tmp_path / "known_hosts").write_text(
            f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n")
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.attempts += 1
            if self.attempts <= self.drops:
                conn.close()
                continue
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            transport.start_server(server=_AcceptAnyKey(self.client_key))
            self.transports.append(transport)

    def close(self) -> None:
        self.listener.close()
        for transport in self.transports:
            transport.close()


@pytest.fixture
def flaky(tmp_path):
    made = []

    def make(drops: int) -> FlakySshServer:
        made.append(FlakySshServer(tmp_path, drops))
        return made[-1]
    yield make
    for server in made:
        server.close()


def test_connect_retries_until_the_host_accepts_on_the_third_try(tmp_path, flaky):
    server = flaky(drops=2)
    inv = inventory(tmp_path, port=server.port, retries=3)
    session = HostSession(inv, inv.hosts[0])
    try:
        session.connect()
        assert session._client.get_transport().is_authenticated()
    finally:
        session.close()
    assert server.attempts == 3


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_connect_gives_up_after_exactly_the_configured_retries(tmp_path, flaky, retries):
    server = flaky(drops=99)
    inv = inventory(tmp_path, port=server.port, retries=retries)
    with pytest.raises(TransportError, match=f"cannot reach 127.0.0.1:{server.port}"):
        HostSession(inv, inv.hosts[0]).connect()
    assert server.attempts == retries + 1


# -- failure isolation -------------------------------------------------------------------------------------------
class RecordingProgress:
    def __init__(self):
        self.updates: list[tuple] = []

    def update(self, *args) -> None:
        self.updates.append(args)


@pytest.mark.parametrize("parallel", [1, 4])
def test_an_unexpected_exception_on_one_host_leaves_the_others_to_finish(tmp_path, parallel):
    inv = inventory(tmp_path, hosts=4)
    names = [h.name for h in inv.hosts]
    ran: list[tuple[str, str]] = []

    def first(ctx) -> bool:
        ran.append((ctx.host.name, "first"))
        if ctx.host.name == "h1":
            raise ZeroDivisionError(f"boom with {'s3cret-value'}")
        return True

    def second(ctx) -> bool:
        ran.append((ctx.host.name, "second"))
        return False

    with Engine(inv, names, parallel, RecordingProgress(), source=None) as engine:
        engine.add_secrets({"s3cret-value"})
        engine.each(list(engine.contexts.values()), lambda ctx: engine.step(ctx, "first", first))
        engine.each(list(engine.contexts.values()), lambda ctx: engine.step(ctx, "second", second))
        results = {r.name: r for r in engine.results(names)}
    failed = results["h1"]
    assert failed.status == "failed"
    assert "first: unexpected ZeroDivisionError" in failed.error and "s3cret-value" not in failed.error
    for name in ("h0", "h2", "h3"):
        assert results[name].status == "changed" and results[name].error is None, results[name]
        assert (name, "second") in ran
    assert ("h1", "second") not in ran  # a failed host runs no further step


def test_a_dropped_link_is_reconnected_and_the_step_run_once_more(tmp_path):
    inv = inventory(tmp_path, hosts=2)
    calls: list[str] = []

    def flaky_step(ctx) -> bool:
        calls.append(ctx.host.name)
        if ctx.host.name == "h0" and calls.count("h0") == 1:
            raise TransportError("link dropped")
        return True

    with Engine(inv, ["h0", "h1"], 1, RecordingProgress()) as engine:
        for ctx in engine.contexts.values():
            ctx.session.connect = lambda: None  # the reconnect itself succeeds
        engine.each(list(engine.contexts.values()), lambda ctx: engine.step(ctx, "s", flaky_step))
        results = engine.results(["h0", "h1"])
    assert calls == ["h0", "h0", "h1"]
    assert [r.status for r in results] == ["changed", "changed"]


# -- online artifacts --------------------------------------------------------------------------------------------
def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def artifact(key: str, remote: Path, url: str, pin: str | None, sums: str | None = None) -> Artifact:
    return Artifact(key, str(remote), "0755", f"k3s/{key}", url, pin, sums)


def test_an_artifact_whose_checksum_on_the_host_differs_from_the_pin_is_stale():
    pinned = artifact("install", Path("/usr/local/bin/k3s-install.sh"), "https://x/install.sh", "a" * 64)
    assert stale_artifacts([pinned], Facts({"sha_install": "b" * 64})) == [pinned]
    assert stale_artifacts([pinned], Facts({"sha_install": ""})) == [pinned]
    assert stale_artifacts([pinned], Facts({"sha_install": "a" * 64})) == []
    assert stale_artifacts([pinned], None) == [pinned]  # not probed: the script decides on the host
    from_sums = artifact("bin", Path("/usr/local/bin/k3s"), "https://x/k3s", None, "https://x/sha256sum-amd64.txt")
    assert stale_artifacts([from_sums], Facts({"sha_bin": "c" * 64})) == [from_sums]  # checked on the host


class FakeSession:
    def __init__(self):
        self.scripts: list[str] = []

    def check(self, script: str, what: str, **kwargs) -> str:
        self.scripts.append(script)
        return "changed=install\n"


def test_online_ensure_downloads_what_differs_from_the_pin(tmp_path):
    source = ArtifactSource(inventory(tmp_path))
    host = source.inventory.hosts[0]
    wanted = {a.key: a for a in source.host_artifacts(host)}
    facts = Facts({"sha_install": "f" * 64})  # install script pinned "a"*64 but the host holds another
    session = FakeSession()
    assert source.ensure(session, [wanted["install"]], facts) == ["install"]
    (script,) = session.scripts
    assert wanted["install"].url in script and "a" * 64 in script
    assert source.ensure(session, [wanted["install"]], Facts({"sha_install": "a" * 64})) == []
    assert len(session.scripts) == 1  # nothing to fetch when the host's copy matches


def run_script(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)


@pytest.fixture
def release(tmp_path):
    """A release directory served by file:// URLs: the new artifact and a sha256sum file listing it."""
    directory = tmp_path / "release"
    directory.mkdir()
    new = b"#!/bin/sh\necho new release\n"
    (directory / "k3s").write_bytes(new)
    (directory / "sha256sum-amd64.txt").write_text(f"{sha(new)}  k3s\n{'0' * 64}  other\n")
    return directory, new


@pytest.mark.parametrize("pinned", [True, False], ids=["pin", "release sums"])
def test_the_download_script_fetches_again_a_file_whose_checksum_differs(tmp_path, release, pinned):
    directory, new = release
    remote = tmp_path / "host" / "k3s"
    remote.parent.mkdir()
    remote.write_bytes(b"old release\n")
    sums = None if pinned else f"file://{directory}/sha256sum-amd64.txt"
    wanted = artifact("bin", remote, f"file://{directory}/k3s", sha(new) if pinned else None, sums)
    result = run_script(download_script([wanted]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["changed=bin"]
    assert remote.read_bytes() == new and oct(remote.stat().st_mode & 0o777) == "0o755"
    again = run_script(download_script([wanted]))
    assert again.returncode == 0 and again.stdout == ""  # now it matches: nothing fetched, nothing changed


def test_the_download_script_keeps_the_old_file_when_the_download_does_not_match(tmp_path, release):
    directory, new = release
    remote = tmp_path / "host" / "k3s"
    remote.parent.mkdir()
    remote.write_bytes(b"old release\n")
    wanted = artifact("bin", remote, f"file://{directory}/k3s", "e" * 64)
    result = run_script(download_script([wanted]))
    assert result.returncode == 43 and "sha256 mismatch" in result.stderr
    assert remote.read_bytes() == b"old release\n"
    assert sorted(p.name for p in remote.parent.iterdir()) == ["k3s"]  # no temporary left behind
