"""The lab's SELinux stand-ins (lab/standins/selinux.py) and install.sh behave like the real ones where the kit relies
on them: a new file takes its directory's type; restorecon sets the type the file contexts name (the k3s-selinux
policy's k3s.fc: /usr/local/s?bin/k3s container_runtime_exec_t, /etc/systemd/system/k3s.* container_unit_file_t)
and keeps user, role and range unless -F; install.sh (k3s-io/k3s install.sh setup_selinux) chcons the binary only
when it does not skip the download and restorecons the unit and env file; its uninstall script ends by removing the
k3s-selinux package with yum."""
import pytest

from lab.lifecycle.inventory import K3S_VERSION
from tests.lab.test_standins import _put

HOST = "edge-1"
BIN = "/usr/local/bin/k3s"
POLICY = "/usr/share/selinux/packages/k3s.pp"


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    lab = module_lab_factory(hosts=2, servers=1)
    lab.set_selinux_enforcing(HOST, policy=True)
    release = lab.bundle / "k3s" / K3S_VERSION
    _put(lab, HOST, BIN, (release / "k3s").read_bytes(), 0o755)
    _put(lab, HOST, "/usr/local/bin/k3s-install.sh", (release / "install.sh").read_bytes(), 0o755)
    return lab


def run(lab, command, host=HOST):
    return lab.exec(host, command, check=False)


def kind(lab, path):
    return lab.selinux_label(HOST, path).split(":")[2]


def test_a_new_file_has_its_directorys_type_and_restorecon_gives_the_policys(lab):
    run(lab, f"cp {BIN} /tmp/k3s.new && mv -f /tmp/k3s.new {BIN}")   # a new inode, as an upload makes
    assert lab.selinux_label(HOST, BIN) == "unconfined_u:object_r:bin_t:s0"
    done = run(lab, f"restorecon -v {BIN}")
    assert done.returncode == 0 and done.stdout.strip() == (
        f"Relabeled {BIN} from unconfined_u:object_r:bin_t:s0 to unconfined_u:object_r:container_runtime_exec_t:s0")
    assert run(lab, f"restorecon -v {BIN}").stdout == ""              # nothing left to change
    assert run(lab, f"restorecon -F {BIN}").returncode == 0
    assert lab.selinux_label(HOST, BIN) == "system_u:object_r:container_runtime_exec_t:s0"
    run(lab, f"cp {BIN} /tmp/k3s.new && mv -f /tmp/k3s.new {BIN}")   # replaced: the label went with the old file
    assert kind(lab, BIN) == "bin_t"
    missing = run(lab, "restorecon /usr/local/bin/nothing-here")
    assert missing.returncode != 0 and "No such file or directory" in missing.stderr
    assert run(lab, "restorecon -i /usr/local/bin/nothing-here").returncode == 0


def test_install_script_labels_the_binary_only_when_it_does_not_skip_the_download(lab):
    run(lab, f"cp {BIN} /tmp/k3s.new && mv -f /tmp/k3s.new {BIN}")
    out = run(lab, "INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_SKIP_START=true sh /usr/local/bin/k3s-install.sh")
    assert out.returncode == 0 and "Skipping installation of SELinux RPM" in out.stdout
    assert kind(lab, BIN) == "bin_t"                                  # what the kit must fix itself
    assert kind(lab, "/etc/systemd/system/k3s.service") == "container_unit_file_t"   # restorecon -R -i
    out = run(lab, "INSTALL_K3S_SKIP_DOWNLOAD=binary INSTALL_K3S_SKIP_START=true sh /usr/local/bin/k3s-install.sh")
    assert out.returncode == 0, out.stderr
    assert lab.selinux_label(HOST, BIN) == "system_u:object_r:container_runtime_exec_t:s0"   # its chcon


def test_the_uninstall_script_removes_the_policy_package_and_restorecon_then_knows_no_k3s_entry(lab):
    run(lab, "INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_SKIP_START=true sh /usr/local/bin/k3s-install.sh")
    script = lab.exec(HOST, "cat /usr/local/bin/k3s-uninstall.sh").stdout
    assert script.rstrip().endswith("fi")
    assert "if type yum >/dev/null 2>&1; then\n    yum remove -y k3s-selinux" in script
    assert run(lab, "test -f " + POLICY).returncode == 0
    assert run(lab, "/usr/local/bin/k3s-uninstall.sh").returncode == 0
    assert run(lab, "test -f " + POLICY).returncode == 1
    run(lab, "touch /usr/local/bin/k3s && restorecon /usr/local/bin/k3s")
    assert kind(lab, BIN) == "bin_t"                                  # without the policy, the base type
    assert run(lab, "test -e " + POLICY, host="edge-2").returncode == 1   # never on the other hosts
