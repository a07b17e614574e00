"""Every input mistake is found before any host is contacted: exit 2, all of them at once, nothing written. The
site's only host is a local port that counts every connection made to it, so "not contacted" is observed, not
inferred from how long the run took."""
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from helpers import REPO, json_result, kit, valid_document, write_inventory

PINS = {"installScriptSha256": "a" * 64}


@pytest.fixture
def watched_host():
    """A listening port on 127.0.0.1 and the list of connections it accepted."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted, done = [], threading.Event()

    def accept():
        while not done.is_set():
            try:
                connection, peer = server.accept()
            except OSError:
                continue
            accepted.append(peer)
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    done.set()
    thread.join()
    server.close()


def private_key(path: Path, mode: int = 0o600, passphrase: str | None = None) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase or "", "-f", str(path)], check=True)
    path.chmod(mode)
    return path


def site(tmp_path: Path, port: int, **ssh) -> Path:
    """A one-server site on the watched port, online (no bundle), its hosts' keys known."""
    document = valid_document()
    document.pop("bundle")
    document["k3s"].update(PINS)
    document["metallb"].update({"manifestSha256": "b" * 64, "addresses": ["127.0.0.200-127.0.0.210"]})
    document["nodeSubnet"] = "127.0.0.0/24"
    document["hosts"] = [{"name": "s1", "address": "127.0.0.1", "role": "server", "arch": "x86_64"}]
    document["ssh"].update({"port": port, "connectTimeout": 1, "retries": 0, **ssh})
    return write_inventory(tmp_path, document)


def refused(done: subprocess.CompletedProcess, accepted: list, state: Path) -> str:
    """The run exited 2 without a traceback, contacted nothing and wrote no state; its messages."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert accepted == []
    assert not (state / "mlops-edge-kit").exists()
    return done.stderr


def test_an_open_key_a_directory_kubeconfig_and_bad_options_are_all_reported_at_once(tmp_path, watched_host,
                                                                                     private_state):
    port, accepted = watched_host
    private_key(tmp_path / "id_ed25519", 0o644)
    (tmp_path / "kube").mkdir()
    done = kit("edge.bootstrap", "--site", str(site(tmp_path, port)), "--kubeconfig", str(tmp_path / "kube"),
               "--parallel", "0", "--hosts", "s1,zz")
    text = refused(done, accepted, private_state)
    key = tmp_path / "id_ed25519"
    for expected in (f"ssh.keyFile: {key} has mode 0644, open to group or others: ssh ignores such a key "
                     f"(UNPROTECTED PRIVATE KEY FILE); chmod 600 {key}",
                     f"--kubeconfig {tmp_path / 'kube'}: {tmp_path / 'kube'} is a directory",
                     "--parallel: must be at least 1, got 0", "--hosts: unknown host(s) zz"):
        assert expected in text, text
    assert str(site(tmp_path, port)) in text  # the key's problem names the inventory file


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_any_group_or_other_permission_is_refused_as_ssh_does(tmp_path, watched_host, private_state, mode):
    port, accepted = watched_host
    private_key(tmp_path / "id_ed25519", mode)
    text = refused(kit("edge.plan", "--site", str(site(tmp_path, port))), accepted, private_state)
    assert f"has mode {mode:04o}, open to group or others" in text


def test_a_passphrase_key_without_an_agent_is_refused(tmp_path, watched_host, private_state):
    port, accepted = watched_host
    private_key(tmp_path / "id_ed25519", passphrase="correct horse")
    text = refused(kit("edge.reset", "--site", str(site(tmp_path, port)), "--yes"), accepted, private_state)
    assert "is protected by a passphrase and the kit never asks for one: add it to an ssh-agent" in text
    assert "correct horse" not in text


def test_use_agent_needs_a_running_agent_that_holds_a_key(tmp_path, watched_host, private_state):
    port, accepted = watched_host
    inventory = site(tmp_path, port, useAgent=True)
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    done = subprocess.run([str(REPO / "kit"), "edge.backup", "--site", str(inventory)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)
    assert "ssh.useAgent: no ssh-agent runs here (SSH_AUTH_SOCK is not set)" in refused(done, accepted, private_state)
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        while not socket_path.is_socket():
            assert agent.poll() is None
        done = kit("edge.bootstrap", "--site", str(inventory), env={"SSH_AUTH_SOCK": str(socket_path)})
        assert "ssh.useAgent: the ssh-agent holds no key" in refused(done, accepted, private_state)
        done = kit("edge.bootstrap", "--site", str(inventory), env={"SSH_AUTH_SOCK": str(tmp_path / "gone")})
        assert f"SSH_AUTH_SOCK is {tmp_path / 'gone'}, where no ssh-agent listens" in refused(done, accepted,
                                                                                            private_state)
    finally:
        agent.terminate()
        agent.wait()


def test_a_public_key_given_as_the_private_key_is_refused(tmp_path, watched_host, private_state):
    port, accepted = watched_host
    private_key(tmp_path / "real")
    shutil.copy(tmp_path / "real.pub", tmp_path / "id_ed25519")
    (tmp_path / "id_ed25519").chmod(0o600)
    text = refused(kit("edge.plan", "--site", str(site(tmp_path, port))), accepted, private_state)
    assert "is not a private key ssh can use" in text


@pytest.mark.parametrize("task", ["edge.bootstrap", "edge.restore", "edge.rotate-certs", "edge.kubeconfig"])
def test_a_kubeconfig_the_site_cannot_be_merged_into_is_refused(tmp_path, watched_host, private_state, task):
    port, accepted = watched_host
    private_key(tmp_path / "id_ed25519")
    inventory = site(tmp_path, port)
    (tmp_path / "a-file").write_text("")
    (tmp_path / "broken").write_text("clusters: [\n")
    extra = ["--snapshot", str(tmp_path / "none.db"), "--yes"] if task == "edge.restore" else []
    for kubeconfig, expected in ((tmp_path / "a-file" / "config", f"{tmp_path / 'a-file'} is a file, where a "
                                  "directory is needed"),
                                 (tmp_path / "broken", "is not valid YAML (line 2: "),):
        done = kit(task, "--site", str(inventory), "--kubeconfig", str(kubeconfig), *extra)
        assert f"--kubeconfig {kubeconfig}: " in refused(done, accepted, private_state)
        assert expected in done.stderr
    assert (tmp_path / "broken").read_text() == "clusters: [\n"


def test_a_kubeconfig_directory_on_a_read_only_file_system_is_refused(tmp_path, watched_host, private_state):
    """Root may write anywhere but on a read-only mount: one is made in a mount namespace of the run's own."""
    port, accepted = watched_host
    private_key(tmp_path / "id_ed25519")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    command = (f"mount -t tmpfs -o ro tmpfs {readonly} && exec {REPO / 'kit'} edge.bootstrap --site "
               f"{site(tmp_path, port)} --kubeconfig {readonly / 'kube' / 'config'}")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", command],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert f"cannot write in {readonly}: it is on a read-only file system" in refused(done, accepted, private_state)


def test_a_backups_dir_that_is_a_file_is_refused_before_the_snapshot(tmp_path, watched_host, private_state):
    port, accepted = watched_host
    private_key(tmp_path / "id_ed25519")
    (tmp_path / "backups").write_text("")
    document = yaml.safe_load(site(tmp_path, port).read_text())
    document["backups"] = {"dir": "backups"}
    inventory = write_inventory(tmp_path, document)
    tokens = private_state / "mlops-edge-kit" / "sites" / "t1"
    done = kit("edge.backup", "--site", str(inventory))
    assert done.returncode == 2 and accepted == []
    assert f"backups.dir: {tmp_path / 'backups'} is a file, where a directory is needed" in done.stderr
    assert "no server token for site t1" in done.stderr  # both at once
    assert not tokens.exists()


def test_a_good_key_passes_the_checks_and_the_host_is_contacted(tmp_path, watched_host, private_state):
    """The counter works: with every input right, the run does reach the host, which hangs up before its banner:
    the host's result says so, without paramiko's traceback on stderr."""
    port, accepted = watched_host
    private_key(tmp_path / "id_ed25519")
    done = kit("edge.plan", "--site", str(site(tmp_path, port)), "--json")
    assert done.returncode == 1 and len(accepted) == 1
    assert "Error reading SSH protocol banner (attempt 1 of 1)" in json_result(done)["s1"]["error"]
    assert "Traceback" not in done.stderr, done.stderr


def test_a_known_hosts_that_is_a_directory_or_corrupt_is_refused(tmp_path, watched_host, private_state):
    port, accepted = watched_host
    private_key(tmp_path / "id_ed25519")
    (tmp_path / "known_hosts").mkdir()
    text = refused(kit("edge.plan", "--site", str(site(tmp_path, port))), accepted, private_state)
    assert f"ssh.knownHosts: {tmp_path / 'known_hosts'} is a directory, where a known_hosts file is needed" in text
    (tmp_path / "known_hosts").rmdir()
    (tmp_path / "known_hosts").write_text("127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\n# fine\n[127.0.0.1]:2 ssh-ed25519 !\n")
    text = refused(kit("edge.trust", "--site", str(site(tmp_path, port)), "--yes"), accepted, private_state)
    assert f"ssh.knownHosts: {tmp_path / 'known_hosts'}: line 1 is not a valid host key entry" in text
