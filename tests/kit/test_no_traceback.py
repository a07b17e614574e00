"""A user mistake or an environment problem is exit 2 in the kit's words, never a traceback: a confirmation with
no terminal to answer it, an --out that is a file, a read-only checkout."""
import io
import shutil
import subprocess

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from invoke import Exit

from edge_hosts.tasks.inputs import confirmed
from infra.stack.stack_config import ROOT
from tests.kit.helpers import kit


def site_file(tmp_path):
    """A valid two-host inventory (TEST-NET-1 addresses, RFC 5737: nothing answers) whose private key exists."""
    key = tmp_path / "id_ed25519"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    key.chmod(0o600)
    (tmp_path / "bundle").mkdir()
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({
        "site": "t1", "ssh": {"user": "root", "keyFile": str(key), "knownHosts": str(tmp_path / "known_hosts")},
        "k3s": {"version": "v1.37.2+k3s1"}, "metallb": {"version": "v0.16.1", "addresses": ["192.0.2.200-192.0.2.210"]},
        "nodeSubnet": "192.0.2.0/24", "bundle": str(tmp_path / "bundle"),
        "hosts": [{"name": "s1", "address": "192.0.2.11", "role": "server", "arch": "x86_64"},
                  {"name": "a1", "address": "192.0.2.12", "role": "agent", "arch": "arm64"}]}))
    return site


@pytest.mark.parametrize("stdin", [subprocess.DEVNULL, None])
def test_reset_without_yes_and_no_terminal_says_use_yes(tmp_path, stdin):
    """stdin at its end (/dev/null) or a pipe (capture_output leaves the test's stdin: not a terminal either)."""
    done = subprocess.run([str(ROOT / "kit"), "edge.reset", "--site", str(site_file(tmp_path))], stdin=stdin,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "EOFError" not in done.stderr
    assert done.stderr.startswith("reset: stdin is not a terminal, so nobody can answer")
    assert "give --yes to go ahead without asking" in done.stderr


def test_a_piped_answer_does_not_confirm_a_destructive_command(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    with pytest.raises(Exit) as refused:
        confirmed("Replace the cluster state of site t1?", "restore")
    assert refused.value.code == 2 and "give --yes" in refused.value.message


@pytest.mark.parametrize("below", ["", "/sub"])
def test_plan_out_naming_a_file(tmp_path, below):
    taken = tmp_path / "afile"
    taken.write_text("mine\n")
    done = kit("plan", "--env", "dev", "--out", f"{taken}{below}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    named = f"--out {taken}" if not below else f"--out {taken}{below}: {taken}"
    assert done.stderr == f"plan: {named}: is a file, where a directory is needed\n"
    assert taken.read_text() == "mine\n"


def read_only(directory, *command: str) -> subprocess.CompletedProcess:
    """Run `command` where `directory` is mounted read-only (a private mount namespace: nobody else sees it)."""
    script = f'mount --bind "{directory}" "{directory}" && mount -o remount,ro,bind "{directory}" && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env={"COLUMNS": "200",
                                                                                      "PATH": "/usr/bin:/bin"})


def test_a_read_only_checkout_names_the_directory():
    (ROOT / "out").mkdir(exist_ok=True)  # as any earlier run leaves it (without it, the checkout itself is named)
    done = read_only(ROOT, str(ROOT / "kit"), "plan", "--env", "dev")
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"plan: cannot write in {ROOT / 'out'}: it is on a read-only file system\n"


def test_a_read_only_checkout_on_first_run_says_it_cannot_install(tmp_path):
    shutil.copy(ROOT / "kit", tmp_path / "kit")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    done = read_only(tmp_path, str(tmp_path / "kit"), "--list")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"kit: {tmp_path} is not writable (a read-only checkout?)")
    assert not (tmp_path / ".venv").exists()


def test_an_out_that_is_a_file_is_never_replaced(tmp_path):
    taken = tmp_path / "rendered"
    taken.write_text("mine\n")
    assert kit("fleet.sample-model", "--env", "qa", "--models", str(tmp_path / "models")).returncode == 0
    done = kit("fleet.render", "--env", "qa", "--models", str(tmp_path / "models"), "--out", str(taken))
    assert (done.returncode, done.stderr) == (2, f"fleet.render: --out {taken}: is a file, where a directory is "
                                                 "needed\n")
    assert taken.read_text() == "mine\n"


def test_a_file_option_naming_a_directory(tmp_path):
    done = kit("fleet.status", "--env", "qa", "--html", str(tmp_path))
    assert (done.returncode, done.stderr) == (2, f"fleet.status: --html {tmp_path}: is a directory, where a file "
                                                 "is needed\n")
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*.tmp"))  # the temporary file beside it is gone too
