"""Linux bridge, veth links and network namespaces of one lab (all commands run as root)."""
import subprocess
import time
from pathlib import Path

from lab.hosts.procs import kill_all


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `ip ARGS`; raise with ip's own message when it fails and `check` is set."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def create_bridge(bridge: str, gateway_cidr: str) -> None:
    """A bridge in the root namespace holding the lab's gateway address."""
    ip("link", "add", bridge, "type", "bridge")
    ip("addr", "add", gateway_cidr, "dev", bridge)
    ip("link", "set", bridge, "up")


def add_host_link(netns: str, veth: str, bridge: str) -> None:
    """A namespace whose `eth0` is the peer of `veth`, a port of `bridge`."""
    ip("netns", "add", netns)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    ip("link", "set", veth, "master", bridge, "up")


def set_link(veth: str, up: bool) -> None:
    """Cut (down) or restore (up) a host's link to the bridge."""
    ip("link", "set", veth, "up" if up else "down")


def limit_link(device: str, rate: str | None) -> None:
    """A token-bucket limit (`tc ... tbf`, e.g. rate '20mbit') on what the machine sends through `device` (a host's
    veth: that host's link; the lab bridge: the whole site's uplink), or none."""
    if rate is None:
        subprocess.run(["tc", "qdisc", "del", "dev", device, "root"], capture_output=True)
        return
    done = subprocess.run(["tc", "qdisc", "replace", "dev", device, "root", "tbf", "rate", rate, "burst", "32kbit",
                           "latency", "400ms"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"tc qdisc replace dev {device} ... tbf rate {rate}: {done.stderr.strip()}")


def tx_bytes(device: str) -> int:
    """Bytes the machine has sent through `device` (the kernel's own counter, headers included)."""
    return int(Path("/sys/class/net", device, "statistics", "tx_bytes").read_text())


def link_exists(name: str) -> bool:
    return ip("link", "show", name, check=False).returncode == 0


def list_links(prefix: str) -> list[str]:
    """Links in the root namespace whose names start with `prefix`."""
    done = ip("-o", "link", "show", check=False)
    names = [line.split(":")[1].strip().split("@")[0] for line in done.stdout.splitlines() if ":" in line]
    return [name for name in names if name.startswith(prefix)]


def netns_pids(netns: str) -> list[int]:
    """PIDs of all processes living in a network namespace."""
    done = ip("netns", "pids", netns, check=False)
    return [int(pid) for pid in done.stdout.split()] if done.returncode == 0 else []


def list_netns() -> list[str]:
    done = ip("netns", "list", check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def remove_netns(netns: str) -> None:
    """Kill everything inside a namespace, then delete it (its veth pair goes with it)."""
    for _ in range(50):
        pids = netns_pids(netns)
        if not pids:
            break
        kill_all(pids)
        time.sleep(0.02)
    if netns in list_netns():
        ip("netns", "del", netns, check=False)


def remove_link(name: str) -> None:
    if link_exists(name):
        ip("link", "del", name, check=False)
