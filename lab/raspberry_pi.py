"""Turn a running lab host into a Raspberry Pi as the kit sees one: a device-tree model, a boot cmdline
without the cgroup flags, the cgroup memory controller off until a reboot with them, and a `reboot`."""
import shlex
from pathlib import Path

from lab.host import SSHD, LabHost

STANDINS = Path(__file__).resolve().parent / "standins"
MODEL = "Raspberry Pi 4 Model B Rev 1.5"
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
CGROUPS_OFF = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t0\t1\t1\ncpu\t0\t1\t1\nmemory\t0\t1\t0\n"


def make_raspberry_pi(host: LabHost) -> None:
    """Mount the Pi's firmware view into the host's own mount namespace and install its `reboot`."""
    base = Path(host.dir)
    (base / "firmware").mkdir(exist_ok=True)
    (base / "firmware" / "cmdline.txt").write_text(CMDLINE)
    (base / "cgroups").write_text(CGROUPS_OFF)
    sshd = f"{SSHD} -f {shlex.quote(str(base / 'sshd_config'))} -E {shlex.quote(str(base / 'sshd.log'))}"
    reboot = (STANDINS / "reboot").read_text().replace("@INIT_PID@", str(host.pid)).replace("@SSHD_COMMAND@", sshd)
    target = host.path_on_host("/usr/local/sbin/reboot")
    target.write_text(reboot)
    target.chmod(0o755)
    q = shlex.quote
    host.exec("\n".join([
        "set -e",
        "mount -t tmpfs -o mode=0755 lab-firmware /sys/firmware",
        "mkdir -p /sys/firmware/devicetree/base /boot/firmware",
        f"printf '%s\\000' {q(MODEL)} > /sys/firmware/devicetree/base/model",
        f"mount --bind {q(str(base / 'firmware'))} /boot/firmware",
        f"mount --bind {q(str(base / 'cgroups'))} /proc/cgroups",
    ]))
