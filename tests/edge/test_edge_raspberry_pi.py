"""A Raspberry Pi host: the kit adds the cgroup flags to the boot cmdline, reboots it once, waits for SSH and
checks the memory controller again; a re-run neither edits the cmdline nor reboots."""
from helpers import json_result, kit
from lab_checks import host_file, ready_nodes

from lab.hosts.raspberry_pi import make_raspberry_pi

FLAGS = ("cgroup_enable=cpuset", "cgroup_memory=1", "cgroup_enable=memory")


def boots(lab, host: str) -> int:
    path = host_file(lab, host, "/var/log/lab-units/boots")
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_pi_gets_its_cgroup_flags_and_one_reboot(lab_factory, tmp_path):
    lab = lab_factory(hosts=2, servers=1)
    make_raspberry_pi(lab.host("edge-2"))
    assert "memory\t0\t1\t0" in lab.exec("edge-2", "cat /proc/cgroups").stdout
    kubeconfig = tmp_path / "kubeconfig"
    done = kit("edge.bootstrap", "--site", str(lab.site_file), "--json", "--kubeconfig", str(kubeconfig))
    hosts = json_result(done)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "os-prep" in hosts["edge-2"]["changed"]
    cmdline = lab.exec("edge-2", "cat /boot/firmware/cmdline.txt").stdout
    assert cmdline.count("\n") == 1 and all(cmdline.split().count(flag) == 1 for flag in FLAGS)
    assert "memory\t0\t1\t1" in lab.exec("edge-2", "cat /proc/cgroups").stdout
    assert boots(lab, "edge-2") == 1 and boots(lab, "edge-1") == 0
    assert ready_nodes(lab) == {"edge-1", "edge-2"}
    again = json_result(kit("edge.bootstrap", "--site", str(lab.site_file), "--json", "--kubeconfig", str(kubeconfig)))
    assert {h["status"] for h in again.values()} == {"ok"}
    assert boots(lab, "edge-2") == 1
    assert lab.exec("edge-2", "cat /boot/firmware/cmdline.txt").stdout == cmdline
