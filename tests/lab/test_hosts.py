"""The lab's simulated hosts: identity, SSH with verified host keys, private files, links, teardown."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest
import yaml

from lab import Lab, cleanup_stale
from lab.hosts import network
from lab.hosts.procs import is_alive
from lab.lifecycle import claims
from tests.lab.exec_audit import HostExecAudit
from tests.lab.fixtures import ssh_client, ssh_run


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=3, servers=1)


def _banner(address: str, timeout: float = 2) -> bytes:
    with socket.create_connection((address, 22), timeout=timeout) as sock:
        return sock.recv(64)


def test_hosts_have_distinct_hostnames_and_addresses(lab):
    names = [lab.exec(h.name, "hostname").stdout.strip() for h in lab.hosts]
    addresses = [lab.exec(h.name, "ip -4 -o addr show eth0").stdout.split()[3] for h in lab.hosts]
    assert names == ["edge-1", "edge-2", "edge-3"]
    assert len(set(addresses)) == 3
    assert all(a.startswith(f"10.213.{lab.number}.") and a.endswith("/24") for a in addresses)
    routes = lab.exec("edge-2", "ip route show default").stdout
    assert f"via {lab.gateway}" in routes


def test_ssh_from_root_namespace_with_verified_host_keys(lab):
    for h in lab.hosts:
        client = ssh_client(lab, h.name)
        try:
            assert ssh_run(client, "hostname") == (0, f"{h.name}\n", "")
        finally:
            client.close()


def test_wrong_host_key_is_refused(lab, tmp_path):
    lines = lab.known_hosts.read_text().splitlines()
    keys = [line.split(" ", 1)[1] for line in lines]
    swapped = [f"{line.split()[0]} {keys[(i + 1) % len(keys)]}" for i, line in enumerate(lines)]
    bad = tmp_path / "known_hosts"
    bad.write_text("\n".join(swapped) + "\n")
    client = paramiko.SSHClient()
    client.load_host_keys(str(bad))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect(lab.hosts[0].address, username="root", key_filename=str(lab.key_file),
                       look_for_keys=False, allow_agent=False, timeout=5)
    client.close()


def test_hosts_reach_each_other_over_ssh_port(lab):
    probe = ("/usr/bin/python3 -c \"import socket,sys; "
             "print(socket.create_connection((sys.argv[1], 22), 2).recv(8).decode())\" ")
    out = lab.exec("edge-1", probe + lab.host("edge-3").address).stdout
    assert out.startswith("SSH-2.0")


def test_private_directories_are_private(lab):
    lab.exec("edge-1", "echo mine > /etc/rancher/only-edge-1 && echo t > /tmp/only-edge-1")
    assert lab.exec("edge-1", "cat /etc/rancher/only-edge-1").stdout == "mine\n"
    assert lab.host("edge-1").path_on_host("/etc/rancher/only-edge-1").read_text() == "mine\n"
    for other in ("edge-2", "edge-3"):
        shown = lab.exec(other, "ls -A /etc/rancher /tmp").stdout
        assert "only-edge-1" not in shown
    assert not Path("/etc/rancher/only-edge-1").exists()
    assert not Path("/tmp/only-edge-1").exists()


def test_cut_link_and_restore(lab):
    address = lab.host("edge-2").address
    assert _banner(address).startswith(b"SSH-2.0")
    lab.cut_link("edge-2")
    try:
        with pytest.raises(OSError):
            _banner(address, timeout=1)
    finally:
        lab.restore_link("edge-2")
    assert _banner(address, timeout=5).startswith(b"SSH-2.0")


def test_limit_link_puts_a_token_bucket_on_the_hosts_link_and_lifts_it(lab):
    veth = lab.host("edge-2").veth
    qdisc = lambda: subprocess.run(["tc", "qdisc", "show", "dev", veth], capture_output=True, text=True).stdout
    lab.limit_link("edge-2", "16mbit")
    try:
        assert "tbf" in qdisc() and "16Mbit" in qdisc()
        assert _banner(lab.host("edge-2").address, timeout=5).startswith(b"SSH-2.0")  # thin, not cut
    finally:
        lab.limit_link("edge-2", None)
    assert "tbf" not in qdisc()


def test_process_argvs_lists_the_hosts_processes(lab):
    argvs = lab.process_argvs("edge-3")
    assert any(argv[0].startswith("sshd:") or argv[0] == "/usr/sbin/sshd" for argv in argvs)
    assert ["sleep", "infinity"] in argvs
    lab.exec("edge-3", "sleep 30 >/dev/null 2>&1 &", timeout=5)
    assert ["sleep", "30"] in lab.process_argvs("edge-3")
    assert ["sleep", "30"] not in lab.process_argvs("edge-2")


def test_the_exec_audit_records_a_millisecond_exec_of_an_ssh_session_and_leaves_no_wrapper(lab):
    client = ssh_client(lab, "edge-2")
    try:
        with HostExecAudit(lab.host("edge-2")) as audit:
            assert ssh_run(client, "env true canary-1 && sh -c 'env true canary-2'")[0] == 0
            assert ssh_run(client, "sudo env true canary-3")[0] == 0  # sudo's secure_path keeps /usr/local/sbin first
        assert ssh_run(client, "command -v env")[1].strip() != "/usr/local/sbin/env"
    finally:
        client.close()
    seen = [argv for argv in audit.records if b"canary" in argv[-1]]
    assert seen == [[b"env", b"true", b"canary-1"], [b"true", b"canary-1"], [b"sh", b"-c", b"env true canary-2"],
                    [b"env", b"true", b"canary-2"], [b"true", b"canary-2"], [b"sudo", b"env", b"true", b"canary-3"],
                    [b"env", b"true", b"canary-3"], [b"true", b"canary-3"]]
    assert not lab.host("edge-2").path_on_host("/root/.exec-audit").exists()


def test_output_files(lab):
    site = yaml.safe_load(lab.site_file.read_text())
    assert [(h["name"], h["role"]) for h in site["hosts"]] == [
        ("edge-1", "server"), ("edge-2", "agent"), ("edge-3", "agent")]
    assert site["nodeSubnet"] == lab.subnet
    assert site["metallb"]["addresses"] == [f"10.213.{lab.number}.200-10.213.{lab.number}.220"]
    assert site["ssh"]["keyFile"] == str(lab.key_file) and lab.key_file.is_absolute()
    assert lab.key_file.stat().st_mode & 0o777 == 0o600
    assert len(lab.known_hosts.read_text().splitlines()) == 3
    assert json.loads(lab.state_file.read_text())["number"] == lab.number


def test_down_leaves_nothing_behind(lab_factory):
    small = lab_factory(hosts=2)
    pids = [(h.pid, h.started) for h in small.hosts]
    small.exec("edge-1", "sleep 300 >/dev/null 2>&1 &")
    netns = [h.netns for h in small.hosts]
    small.down()
    assert not set(netns) & set(network.list_netns())
    assert not network.link_exists(small.bridge)
    assert not any(network.link_exists(h.veth) for h in small.hosts)
    assert not any(is_alive(pid, started) for pid, started in pids)
    assert not claims.lab_dir(small.number).exists()
    assert not small.state_file.exists()


def test_concurrent_labs_get_distinct_subnets(lab_factory):
    labs, errors = [], []

    def make():
        try:
            labs.append(lab_factory(hosts=1))
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=make) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({one.number for one in labs}) == 2
    for one in labs:
        assert _banner(one.hosts[0].address).startswith(b"SSH-2.0")


def test_cleanup_stale_removes_dead_labs_only(lab, tmp_path):
    out = tmp_path / "dead"
    script = f"from lab import Lab; print(Lab.up(hosts=1, out_dir={str(out)!r}).number)"
    number = int(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                                text=True, cwd=Path(__file__).parents[2]).stdout)
    dead = Lab.load(out)
    assert dead.is_running()                       # its owner exited, but its hosts still run
    assert number not in cleanup_stale()           # so it is not stale yet
    os.kill(dead.hosts[0].pid, 9)
    deadline = time.monotonic() + 5
    while is_alive(dead.hosts[0].pid, dead.hosts[0].started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert number in cleanup_stale()
    assert not network.link_exists(claims.bridge_name(number))
    assert dead.hosts[0].netns not in network.list_netns()
    assert lab.is_running() and lab.exec("edge-1", "true").returncode == 0


def test_up_refuses_bad_requests(tmp_path):
    from lab import LabError
    with pytest.raises(LabError, match="hosts must be between 1 and 100"):
        Lab.up(hosts=0, out_dir=tmp_path)
    with pytest.raises(LabError, match="servers must be between 1 and hosts"):
        Lab.up(hosts=2, servers=3, out_dir=tmp_path)


def test_reimage_wipes_the_hosts_own_files_and_keeps_its_name_and_address(lab):
    lab.exec("edge-3", "mkdir -p /etc/rancher/node && echo pw > /etc/rancher/node/password && touch /root/upload")
    lab.reimage("edge-3")
    assert lab.exec("edge-3", "ls -A /etc/rancher /var/lib/rancher /root /usr/local/bin").stdout.split() == [
        "/etc/rancher:", "/root:", "/usr/local/bin:", "/var/lib/rancher:"]
    assert lab.exec("edge-3", "hostname").stdout.strip() == "edge-3"
    assert "systemctl" in lab.exec("edge-3", "ls /usr/local/sbin").stdout   # the OS (lab stand-ins) stays
    client = ssh_client(lab, "edge-3")
    client.close()


def test_selinux_enforcing_is_visible_only_on_that_host(lab):
    lab.set_selinux_enforcing("edge-2")
    assert lab.exec("edge-2", "cat /sys/fs/selinux/enforce").stdout.strip() == "1"
    assert lab.exec("edge-2", "getenforce").stdout.strip() == "Enforcing"
    cgroups = "ls -A /sys/fs/cgroup; cat /proc/cgroups"     # the cgroup view stays what it was
    assert lab.exec("edge-2", cgroups).stdout == lab.exec("edge-1", cgroups).stdout
    assert lab.exec("edge-1", "cat /sys/fs/selinux/enforce", check=False).returncode != 0
