"""Things that happen to a lab host behind the kit's back: a reboot, a re-image, SELinux switched to enforcing."""
import shlex
from pathlib import Path

from lab.hosts.host import SSHD, LabHost

STANDINS = Path(__file__).resolve().parents[1] / "standins"
# what a re-image wipes (the host's own files; /usr/local/sbin holds the lab's systemd stand-ins, i.e. the OS)
REIMAGED = ("/etc/rancher", "/var/lib/rancher", "/usr/local/bin", "/etc/systemd/system", "/etc/sysctl.d",
            "/var/log/lab-units", "/root", "/tmp")
GETENFORCE = "#!/bin/sh\n# lab stand-in: SELinux is enforcing on this host\necho Enforcing\n"


def install_reboot(host: LabHost) -> None:
    """/usr/local/sbin/reboot for this host (needs its init PID, so after the host started)."""
    base = Path(host.dir)
    sshd = f"{SSHD} -f {shlex.quote(str(base / 'sshd_config'))} -E {shlex.quote(str(base / 'sshd.log'))}"
    text = (STANDINS / "reboot").read_text().replace("@INIT_PID@", str(host.pid)).replace("@SSHD_COMMAND@", sshd)
    _write(host, "/usr/local/sbin/reboot", text)


def reimage(host: LabHost) -> None:
    """The host is installed afresh under the same name and address: every process but its init and sshd
    stops, its own files are wiped (node password, k3s data, units, uploads). The SSH host key is kept, so the kit
    can still reach it (a real re-image would need the operator to update known_hosts)."""
    host.exec("for u in /etc/systemd/system/*.service; do [ -e \"$u\" ] && systemctl stop \"$(basename \"$u\")\"; "
              "done; true")
    host.exec(" ".join(["find"] + [shlex.quote(d) for d in REIMAGED] + ["-mindepth", "1", "-delete"]))
    host.path_on_host("/tmp").chmod(0o1777)


def set_selinux_enforcing(host: LabHost) -> None:
    """/sys/fs/selinux/enforce reads 1 and `getenforce` says Enforcing (in this host's mount namespace only;
    /sys/fs is replaced by a tmpfs that keeps the cgroup mount); restorecon, chcon and selinux-label (lab/standins/
    selinux.py: labels as a user xattr) are there, as policycoreutils is. No k3s-selinux policy is installed."""
    host.exec("\n".join([
        "set -e",
        "mkdir -p /tmp/.lab-cgroup",
        "mount --rbind /sys/fs/cgroup /tmp/.lab-cgroup",
        "mount -t tmpfs -o mode=0755 lab-sysfs /sys/fs",
        "mkdir -p /sys/fs/cgroup /sys/fs/selinux",
        "mount --rbind /tmp/.lab-cgroup /sys/fs/cgroup",
        "umount -l /tmp/.lab-cgroup",
        "rmdir /tmp/.lab-cgroup",
        "echo 1 > /sys/fs/selinux/enforce",
    ]))
    _write(host, "/usr/local/sbin/getenforce", GETENFORCE)
    for tool in ("restorecon", "chcon", "selinux-label"):
        _write(host, f"/usr/local/sbin/{tool}", (STANDINS / "selinux.py").read_text())


def install_selinux_policy(host: LabHost) -> None:
    """The k3s-selinux package on an enforcing host: /usr/share/selinux/packages/k3s.pp (the machine's /usr/share
    stays as it is: this host sees it through an overlay) and `yum`, which can remove the package again."""
    upper = "/usr/local/sbin/.lab-usr-share"
    host.exec("\n".join([
        "set -e",
        f"mkdir -p {upper}",
        f"mount -t tmpfs -o mode=0755 lab-usr-share {upper}",
        f"mkdir {upper}/upper {upper}/work",
        f"mount -t overlay lab-usr-share -o lowerdir=/usr/share,upperdir={upper}/upper,workdir={upper}/work /usr/share",
        "mkdir -p /usr/share/selinux/packages",
        "echo 'lab stand-in for the k3s-selinux policy module' > /usr/share/selinux/packages/k3s.pp",
    ]))
    _write(host, "/usr/local/sbin/yum", (STANDINS / "selinux.py").read_text())


def _write(host: LabHost, path: str, text: str) -> None:
    target = host.path_on_host(path)
    target.write_text(text)
    target.chmod(0o755)
