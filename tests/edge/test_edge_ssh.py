"""SSH layer against lab hosts: host key trust, sudo (password, passwordless), unreachable hosts, atomic uploads."""
import hashlib
import secrets
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from edge_hosts.access.hostkeys import fingerprint
from edge_hosts.inventory.load import load_inventory
from edge_hosts.access.ssh import HostSession, RemoteError
from helpers import json_result, kit, lab_site
from lab_checks import ArgvSampler

PINS = {"k3s.installScriptSha256": "a" * 64, "metallb.manifestSha256": "b" * 64}


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=2, servers=1)


def host_fingerprint(lab, name: str) -> str:
    key = paramiko.Ed25519Key.from_private_key_file(str(Path(lab.host(name).dir) / "ssh_host_ed25519_key"))
    return fingerprint(key)


def test_unknown_host_keys_are_refused_then_trusted_explicitly(lab, tmp_path):
    known = tmp_path / "known_hosts"
    site = lab_site(lab, tmp_path, **PINS, **{"ssh.knownHosts": str(known)})
    hosts = json_result(kit("edge.plan", "--site", str(site), "--json"))
    for name in ("edge-1", "edge-2"):
        assert hosts[name]["status"] == "failed"
        assert "unknown host key" in hosts[name]["error"]
        assert host_fingerprint(lab, name) in hosts[name]["error"]
        assert "./kit edge.trust --site lab" in hosts[name]["error"]
    shown = kit("edge.trust", "--site", str(site), stdin="n\n")
    assert host_fingerprint(lab, "edge-1") in shown.stdout.replace("\n", "")
    assert not known.exists() or known.read_text() == ""
    assert kit("edge.trust", "--site", str(site), "--yes").returncode == 0
    hosts = json_result(kit("edge.plan", "--site", str(site), "--json"))
    assert all(h["status"] != "failed" for h in hosts.values()), hosts


def test_a_changed_host_key_is_refused_loudly_and_not_recorded(lab, tmp_path):
    impostor = paramiko.Ed25519Key.from_private_key_file(str(lab.key_file))  # any other ed25519 key
    lines = lab.known_hosts.read_text().splitlines()
    lines = [f"{lab.host('edge-2').address} ssh-ed25519 {impostor.get_base64()}" if l.startswith(
        lab.host("edge-2").address + " ") else l for l in lines]
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(lines) + "\n")
    site = lab_site(lab, tmp_path, **PINS, **{"ssh.knownHosts": str(known)})
    done = kit("edge.plan", "--site", str(site), "--json")
    hosts = json_result(done)
    assert done.returncode == 1
    assert "HOST KEY CHANGED" in hosts["edge-2"]["error"] and host_fingerprint(lab, "edge-2") in hosts["edge-2"]["error"]
    assert hosts["edge-1"]["status"] == "changed"
    before = known.read_text()
    trusted = kit("edge.trust", "--site", str(site), "--yes")
    assert trusted.returncode == 1 and "HOST KEY CHANGED" in trusted.stderr
    assert known.read_text() == before


def test_an_unreachable_host_fails_alone_after_retries(lab, tmp_path):
    site = lab_site(lab, tmp_path, **PINS, **{"ssh.connectTimeout": 1, "ssh.retries": 1})
    lab.cut_link("edge-2")
    try:
        started = time.monotonic()
        hosts = json_result(kit("edge.plan", "--site", str(site), "--json"))
        elapsed = time.monotonic() - started
    finally:
        lab.restore_link("edge-2")
    assert hosts["edge-2"]["status"] == "failed" and "cannot reach 10.213." in hosts["edge-2"]["error"]
    assert hosts["edge-1"]["status"] == "changed"
    assert elapsed < 30  # two 1 s attempts, not an indefinite hang


def test_upload_is_atomic_and_verified(lab, tmp_path):
    inventory = load_inventory(str(lab_site(lab, tmp_path, **PINS)))
    session = HostSession(inventory, inventory.host("edge-2"))
    data = secrets.token_bytes(300_000)
    try:
        session.upload(data, "/etc/rancher/k3s/kit-test.bin", "0600", hashlib.sha256(data).hexdigest())
        with pytest.raises(RemoteError, match="sha256 mismatch"):
            session.upload(data + b"x", "/etc/rancher/k3s/kit-test2.bin", "0644", hashlib.sha256(data).hexdigest())
    finally:
        session.close()
    on_host = lab.host("edge-2").path_on_host("/etc/rancher/k3s")
    assert (on_host / "kit-test.bin").read_bytes() == data
    assert oct((on_host / "kit-test.bin").stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in on_host.iterdir()) == ["kit-test.bin"]  # no staged or half-written file
    lab.exec("edge-2", "rm -rf /etc/rancher/k3s")


@pytest.fixture
def sudo_user(lab):
    """A non-root login user with a sudo password on the lab machine (lab hosts share /etc/passwd)."""
    name, password = f"kit{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    sudoers = Path(f"/etc/sudoers.d/{name}")
    sudoers.write_text(f"{name} ALL=(ALL) ALL\n")
    sudoers.chmod(0o440)
    yield name, password, sudoers
    sudoers.unlink(missing_ok=True)
    subprocess.run(["userdel", "-r", name], capture_output=True)


def test_sudo_with_password_from_env_wrong_password_and_passwordless(lab, tmp_path, sudo_user):
    name, password, sudoers = sudo_user
    site = lab_site(lab, tmp_path, **PINS, **{"ssh.user": name, "ssh.sudoPasswordEnv": "EDGE_TEST_SUDO"})
    with ArgvSampler(lab) as argvs:
        good = kit("edge.plan", "--site", str(site), "--json", env={"EDGE_TEST_SUDO": password})
    assert argvs.samples > 3 and not [a for a in argvs.seen if password in a]
    assert all(h["status"] == "changed" for h in json_result(good).values()), good.stdout + good.stderr
    bad = kit("edge.plan", "--site", str(site), "--json", env={"EDGE_TEST_SUDO": "wrong-" + password})
    for host in json_result(bad).values():
        assert host["status"] == "failed" and f"sudo does not work for {name}" in host["error"]
    assert password not in good.stdout + good.stderr + bad.stdout + bad.stderr
    missing = kit("edge.plan", "--site", str(site))
    assert missing.returncode == 2 and "EDGE_TEST_SUDO is not set" in missing.stderr
    sudoers.write_text(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
    passwordless = lab_site(lab, tmp_path, "nopw.yaml", **PINS, **{"ssh.user": name})
    hosts = json_result(kit("edge.plan", "--site", str(passwordless), "--json"))
    assert all(h["status"] == "changed" for h in hosts.values()), hosts


def test_a_password_is_never_sent_to_passwordless_sudo(lab, tmp_path, sudo_user):
    name, _, sudoers = sudo_user
    sudoers.write_text(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
    marker = f"/root/kit-password-ran-as-command-{secrets.token_hex(4)}"
    site = lab_site(lab, tmp_path, **PINS, **{"ssh.user": name, "ssh.sudoPasswordEnv": "EDGE_TEST_SUDO"})
    done = kit("edge.plan", "--site", str(site), "--json", env={"EDGE_TEST_SUDO": f"touch {marker}"})
    assert all(h["status"] == "changed" for h in json_result(done).values()), done.stdout + done.stderr
    assert not any(h.path_on_host(marker).exists() for h in lab.hosts)
