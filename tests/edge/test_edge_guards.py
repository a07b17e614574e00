"""Failure isolation, retries and file modes, unit-level: a local SSH host (paramiko server: exec `sh -s` here,
SFTP in a scratch home) that accepts on the third try and records every SFTP write with the file's mode then;
one host's unexpected exception leaving the others to finish; online artifacts fetched again when the host's
copy differs from the pin (the download script run here, against file:// URLs); the modes the kit asks for."""
import hashlib
import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import paramiko
import pytest
import yaml

from common import k3s

from edge_hosts.inventory import k3s_config
from edge_hosts.artifacts.downloads import Artifact, ArtifactSource, download_script, stale_artifacts
from edge_hosts.engine.fanout import Engine
from edge_hosts.inventory.model import Inventory
from edge_hosts.facts.probe import Facts
from edge_hosts.bootstrap.runner import Bootstrap
from edge_hosts.access.ssh import UPLOAD_PREFIX, HostSession, TransportError
from edge_hosts.steps import host as host_steps
from edge_hosts.engine.context import HostContext
from edge_hosts.steps.host import config as config_step


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


# -- a local SSH host ----------------------------------------------------------------------------------------------
class _Host(paramiko.ServerInterface):
    """Public-key auth for the test's key; `exec` runs the command here with the channel's stdin."""

    def __init__(self, client_key: paramiko.PKey, home: Path):
        self.client_key, self.home = client_key, home

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        return paramiko.AUTH_SUCCESSFUL if key == self.client_key else paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        threading.Thread(target=self._exec, args=(channel, command.decode()), daemon=True).start()
        return True

    def _exec(self, channel, command: str) -> None:
        stdin = channel.makefile("rb").read()
        done = subprocess.run(command, shell=True, input=stdin, capture_output=True, cwd=self.home, timeout=60)
        channel.sendall(done.stdout)
        channel.sendall_stderr(done.stderr)
        channel.send_exit_status(done.returncode)
        channel.close()


class _Handle(paramiko.SFTPHandle):
    def __init__(self, sftp: "_Sftp", path: Path, flags: int, handle):
        super().__init__(flags)
        self.sftp, self.path, self.readfile = sftp, path, handle
        self.writefile = handle

    def write(self, offset, data):
        self.sftp.events.append(("write", self.path.name, stat.S_IMODE(os.stat(self.path).st_mode)))
        return super().write(offset, data)


class _Sftp(paramiko.SFTPServerInterface):
    """SFTP in the scratch home, like OpenSSH's sftp-server: open(2) with the request's permissions, else 0666
    under the umask; every open, attribute change and write recorded with the file's mode at that moment."""

    events: list[tuple[str, str, int]] = []
    home: Path = Path("/nonexistent")

    def _real(self, path: str) -> Path:
        return Path(path) if path.startswith("/") else self.home / path

    def canonicalize(self, path):
        return str(self._real(path).resolve()) if path not in (".", "") else str(self.home)

    def open(self, path, flags, attr):
        real = self._real(path)
        mode = attr.st_mode if attr is not None and attr.st_mode is not None else 0o666
        fd = os.open(real, flags, mode & 0o7777)
        self.events.append(("open", real.name, stat.S_IMODE(os.fstat(fd).st_mode)))
        return _Handle(self, real, flags, os.fdopen(fd, "r+b" if flags & os.O_RDWR else "wb"))

    def chattr(self, path, attr):
        if attr.st_mode is not None:
            os.chmod(self._real(path), stat.S_IMODE(attr.st_mode))
            self.events.append(("chmod", self._real(path).name, stat.S_IMODE(attr.st_mode)))
        return paramiko.SFTP_OK

    def stat(self, path):
        return paramiko.SFTPAttributes.from_stat(os.stat(self._real(path)))

    lstat = stat

    def list_folder(self, path):
        real = self._real(path)
        return [paramiko.SFTPAttributes.from_stat(os.lstat(real / name), name) for name in os.listdir(real)]

    def remove(self, path):
        os.remove(self._real(path))
        return paramiko.SFTP_OK


class MiniHost:
    """127.0.0.1 SSH host that drops the first `drops` connections before the banner, then speaks SSH."""

    def __init__(self, tmp_path: Path, drops: int = 0):
        self.drops, self.attempts = drops, 0
        self.home = tmp_path / "home"
        self.home.mkdir(mode=0o700)
        self.events: list[tuple[str, str, int]] = []
        self.sftp_class = type("Sftp", (_Sftp,), {"events": self.events, "home": self.home})
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
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, self.sftp_class)
            transport.start_server(server=_Host(self.client_key, self.home))
            self.transports.append(transport)

    def close(self) -> None:
        self.listener.close()
        for transport in self.transports:
            transport.close()


@pytest.fixture
def ssh_host(tmp_path):
    made = []

    def make(drops: int) -> MiniHost:
        made.append(MiniHost(tmp_path, drops))
        return made[-1]
    yield make
    for server in made:
        server.close()


def test_connect_retries_until_the_host_accepts_on_the_third_try(tmp_path, ssh_host):
    server = ssh_host(drops=2)
    inv = inventory(tmp_path, port=server.port, retries=3)
    session = HostSession(inv, inv.hosts[0])
    try:
        session.connect()
        assert session._client.get_transport().is_authenticated()
    finally:
        session.close()
    assert server.attempts == 3


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_connect_gives_up_after_exactly_the_configured_retries(tmp_path, ssh_host, retries):
    server = ssh_host(drops=99)
    inv = inventory(tmp_path, port=server.port, retries=retries)
    with pytest.raises(TransportError, match=f"cannot reach 127.0.0.1:{server.port}"):
        HostSession(inv, inv.hosts[0]).connect()
    assert server.attempts == retries + 1


# -- file modes ----------------------------------------------------------------------------------------------------
def test_a_staged_upload_is_0600_before_its_first_byte_and_installed_with_its_mode(tmp_path, ssh_host):
    host = ssh_host(drops=0)
    inv = inventory(tmp_path, port=host.port)
    target = tmp_path / "etc" / "rancher" / "k3s" / "config.yaml"
    data = b"token: K10secret::server:pw\n" * 5000  # several SFTP writes
    session = HostSession(inv, inv.hosts[0])
    try:
        session.upload(data, str(target), "0600", hashlib.sha256(data).hexdigest())
    finally:
        session.close()
    staged = {name for kind, name, mode in host.events if name.startswith(f"{UPLOAD_PREFIX}h0-")}
    assert len(staged) == 1, host.events  # staged once, in the login user's home
    writes = [mode for kind, name, mode in host.events if kind == "write" and name in staged]
    assert len(writes) > 1 and set(writes) == {0o600}, host.events
    assert target.read_bytes() == data and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not [p for p in host.home.iterdir()] and not list(target.parent.glob(".*kit-new"))


def test_uploads_are_installed_with_the_mode_asked_for(tmp_path, ssh_host):
    host = ssh_host(drops=0)
    inv = inventory(tmp_path, port=host.port)
    target = tmp_path / "bin" / "k3s"
    session = HostSession(inv, inv.hosts[0])
    try:
        session.upload(b"#!/bin/sh\n", str(target), "0755", hashlib.sha256(b"#!/bin/sh\n").hexdigest())
    finally:
        session.close()
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


class UploadRecorder:
    def __init__(self):
        self.uploads: list[tuple[str, str]] = []
        self.secrets: set[str] = set()

    def upload(self, source, remote: str, mode: str, sha256: str) -> None:
        self.uploads.append((remote, mode))


@pytest.mark.parametrize("name", ["h0", "h1"])
def test_the_token_bearing_config_is_uploaded_0600_on_every_role(tmp_path, name):
    inv = inventory(tmp_path, hosts=2)
    session = UploadRecorder()
    ctx = HostContext(inv, inv.host(name), session, source=None, facts=Facts({}))
    tokens = k3s_config.Tokens("server-pw", "agent-pw", "K10abc::server:server-pw", "K10abc::node:agent-pw")
    assert config_step(ctx, tokens) is True
    assert session.uploads == [(k3s.CONFIG, "0600")]


def test_every_servers_kubeconfig_is_written_0600_whatever_the_inventory_says(tmp_path):
    document = inventory(tmp_path, hosts=3).model_dump(by_alias=True, exclude={"source"})
    document["hosts"][1]["role"] = "server"
    document["k3s"]["serverConfig"] = {"write-kubeconfig-mode": "0644"}
    document["k3s"]["nodeConfig"] = {"write-kubeconfig-mode": "0644"}
    inv = Inventory.model_validate(document)
    for host in inv.servers:
        assert yaml.safe_load(k3s_config.render_config(inv, host, None))["write-kubeconfig-mode"] == "0600", host.name


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
        assert engine.step(engine.contexts["h1"], "third", second) is False  # asked directly, still not run
        results = {r.name: r for r in engine.results(names)}
    failed = results["h1"]
    assert failed.status == "failed"
    assert "first: unexpected ZeroDivisionError" in failed.error and "s3cret-value" not in failed.error
    for name in ("h0", "h2", "h3"):
        assert results[name].status == "changed" and results[name].error is None, results[name]
        assert (name, "second") in ran
    assert ("h1", "second") not in ran  # a failed host runs no further step


def test_joiners_of_a_failed_first_server_fail_saying_so_and_change_nothing(tmp_path, monkeypatch):
    """No SSH: every host step is a stand-in recording what it was asked; the first server's install fails."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    inv = inventory(tmp_path, hosts=3)
    asked: list[tuple[str, str]] = []

    def probe(self, ctx) -> None:
        ctx.facts = Facts({"hostname": ctx.host.name})

    def prepared(name):
        def step(ctx, *args) -> bool:
            asked.append((ctx.host.name, name))
            return False
        return step

    def install(ctx) -> bool:
        asked.append((ctx.host.name, "install"))
        raise host_steps.StepError("k3s.service is not ready within 60 s: bind: address already in use")

    monkeypatch.setattr(Engine, "connect_and_probe", probe)
    for name in ("preflight", "os_prep", "artifacts", "config"):
        monkeypatch.setattr(host_steps, name, prepared(name))
    monkeypatch.setattr(host_steps, "install", install)
    results = {r.name: r for r in Bootstrap(inv, ["h0", "h1", "h2"], 2, RecordingProgress(), None).run()}
    assert results["h0"].status == "failed" and "address already in use" in results["h0"].error
    assert ("h0", "config") in asked and ("h0", "install") in asked
    for joiner in ("h1", "h2"):
        result = results[joiner]
        assert result.status == "failed" and result.changed == [], result
        assert "first server h0" in result.error and "failed" in result.error, result.error
        assert (joiner, "artifacts") in asked  # prepared like every host, then stopped before joining
        assert not {(joiner, "config"), (joiner, "install")} & set(asked)  # no config.yaml without a token


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
    def __init__(self, inventory):
        self.inventory = inventory
        self.secrets: set[str] = set()
        self.scripts: list[str] = []

    def check(self, script: str, what: str, **kwargs) -> str:
        self.scripts.append(script)
        return "changed=install\n"


def test_online_ensure_downloads_what_differs_from_the_pin(tmp_path):
    source = ArtifactSource(inventory(tmp_path))
    host = source.inventory.hosts[0]
    wanted = {a.key: a for a in source.host_artifacts(host)}
    facts = Facts({"sha_install": "f" * 64})  # install script pinned "a"*64 but the host holds another
    session = FakeSession(source.inventory)
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
