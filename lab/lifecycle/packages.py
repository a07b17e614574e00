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
    "openssl": "openssl",          # the stand-in k3s makes its cluster CA with it
    "curl": "curl",                # the stand-in install script downloads with it (online hosts)
    "/usr/bin/python3": "python3",  # interpreter of the stand-in k3s and systemctl
    "dot": "graphviz",             # ./kit plan draws graph.svg with it (tests check the picture)
    "/usr/bin/docker-registry": "docker-registry",  # the fleet tests' real OCI registry (CNCF distribution)
    "chromium": "chromium",        # the fleet tests open the fleet.status --html page headless
    "nft": "nftables",             # real firewall rules in the hosts' network namespaces (edge preflight tests)
    "iptables-nft-save": "iptables",  # and iptables rules on its nftables backend, as ufw writes them
}
# Python modules the stand-ins import from the hosts' /usr/bin/python3 -> Debian package
REQUIRED_MODULES = {"yaml": "python3-yaml"}


def missing_packages() -> list[str]:
    """Debian packages whose commands are not on this machine."""
    absent = {pkg for cmd, pkg in REQUIRED.items() if not shutil.which(cmd)}
    if shutil.which("/usr/bin/python3"):
        absent |= {pkg for module, pkg in REQUIRED_MODULES.items() if not _has_module(module)}
    return sorted(absent)


def _has_module(module: str) -> bool:
    probe = subprocess.run(["/usr/bin/python3", "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


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
