"""System packages the lab and the test suite need, installed with apt when missing."""
import os
import shutil
import subprocess

# command that must exist -> Debian package providing it
REQUIRED = {
    "/usr/sbin/sshd": "openssh-server",
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "sudo": "sudo",
    "ps": "procps",
    "bash": "bash",
}


def missing_packages() -> list[str]:
    """Debian packages whose commands are not on this machine."""
    absent = {pkg for cmd, pkg in REQUIRED.items() if not shutil.which(cmd)}
    return sorted(absent)


def ensure_packages() -> None:
    """Install missing packages with apt-get (needs root); raise with a clear message otherwise."""
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"the lab needs these packages installed as root: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                   stdout=subprocess.DEVNULL)
