"""Turn a running lab host into a Raspberry Pi as the kit sees one: a device-tree model, a boot cmdline
without the cgroup flags and the cgroup memory controller off until a reboot (lab/standins/reboot) with them."""
import shlex
from pathlib import Path

from lab.hosts.host import LabHost

MODEL = "Raspberry Pi 4 Model B Rev 1.5"
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
CGROUPS_OFF = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t0\t1\t1\ncpu\t0\t1\t1\nmemory\t0\t1\t0\n"


def make_raspberry_pi(host: LabHost) -> None:
    """Mount the Pi's firmware view into the host's own mount namespace."""
    base = Path(host.dir)
    (base / "firmware").mkdir(exist_ok=True)
    (base / "firmware" / "cmdline.txt").write_text(CMDLINE)
    (base / "cgroups").write_text(CGROUPS_OFF)
    q = shlex.quote
    host.exec("\n".join([
        "set -e",
        "mount -t tmpfs -o mode=0755 lab-firmware /sys/firmware",
        "mkdir -p /sys/firmware/devicetree/base /boot/firmware",
        f"printf '%s\\000' {q(MODEL)} > /sys/firmware/devicetree/base/model",
        f"mount --bind {q(str(base / 'firmware'))} /boot/firmware",
        f"mount --bind {q(str(base / 'cgroups'))} /proc/cgroups",
    ]))
