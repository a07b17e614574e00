"""One simulated edge host: network + mount + UTS namespaces running a real sshd.

The host's "init" is a tiny long-lived process (`sleep infinity`) started inside the network
namespace by `unshare --mount --uts --propagation private`; it bind-mounts the host's private
directories, sets the hostname, starts sshd and stays as the anchor that `nsenter -t PID` targets.
"""
import shlex
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.hosts import network
from lab.hosts.procs import argv_of, start_time

# directories every host has to itself (bind mounts over the machine's own)
PRIVATE_DIRS = ("/etc/rancher", "/var/lib/rancher", "/usr/local/bin", "/usr/local/sbin",
                "/etc/systemd/system", "/etc/sysctl.d", "/etc/modules-load.d", "/var/log/lab-units", "/tmp", "/root")
SSHD = "/usr/sbin/sshd"


@dataclass
class LabHost:
    name: str
    address: str
    role: str
    netns: str
    veth: str
    dir: str           # the host's own files on the machine (its private directories live below)
    pid: int = 0       # the host's init process
    started: int = 0   # its start time (guards against PID reuse)

    def to_dict(self) -> dict:
        return asdict(self)

    def path_on_host(self, path: str) -> Path:
        """Where a path under one of the host's private directories lives on the machine."""
        if not any(path == d or path.startswith(d + "/") for d in PRIVATE_DIRS):
            raise ValueError(f"{path} is not under a private directory of {self.name}")
        return Path(self.dir, "root", path.lstrip("/"))

    def nsenter(self) -> list[str]:
        """Command prefix that runs a program inside this host (net, mount and UTS namespaces)."""
        return ["nsenter", "-t", str(self.pid), "-m", "-u", "-n", "--"]

    def exec(self, command: str, input: str | None = None, check: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a shell command on the host as root; stdout/stderr captured as text."""
        done = subprocess.run([*self.nsenter(), "/bin/sh", "-c", command], input=input,
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{self.name}: {command!r} exited {done.returncode}: "
                               f"{done.stderr.strip()}")
        return done

    def process_argvs(self) -> list[list[str]]:
        """argv of every process running on the host (for checks that no secret is visible)."""
        argvs = (argv_of(pid) for pid in network.netns_pids(self.netns))
        return [argv for argv in argvs if argv]

    def set_link(self, up: bool) -> None:
        network.set_link(self.veth, up)

    def limit_link(self, rate: str | None) -> None:
        network.limit_link(self.veth, rate)


def prepare_files(host: LabHost, gateway: str, prefix_len: int, authorized_keys: Path,
                  etc_hosts: str) -> None:
    """Private directories, sshd config and /etc/hosts of a host (its host key is written apart)."""
    base = Path(host.dir)
    for private in PRIVATE_DIRS:
        target = host.path_on_host(private)
        target.mkdir(parents=True, exist_ok=True)
        Path(private).mkdir(parents=True, exist_ok=True)   # the mount point on the machine
    host.path_on_host("/tmp").chmod(0o1777)
    host.path_on_host("/root").chmod(0o700)
    (base / "hosts").write_text(etc_hosts)
    (base / "sshd_config").write_text(_sshd_config(host, base, authorized_keys))
    (base / "init.sh").write_text(_init_script(host, base, gateway, prefix_len))


def _sshd_config(host: LabHost, base: Path, authorized_keys: Path) -> str:
    return "\n".join([
        f"ListenAddress {host.address}:22",
        f"HostKey {base / 'ssh_host_ed25519_key'}",
        f"PidFile {base / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "MaxStartups 100:30:200",  # the kit fans out to many hosts at once
        "Subsystem sftp internal-sftp",
        "",
    ])


def _init_script(host: LabHost, base: Path, gateway: str, prefix_len: int) -> str:
    q = shlex.quote
    lines = ["set -e",
             "ip link set lo up",
             f"ip addr add {host.address}/{prefix_len} dev eth0",
             "ip link set eth0 up",
             f"ip route add default via {gateway}"]
    lines += [f"mount --bind {q(str(host.path_on_host(d)))} {q(d)}" for d in PRIVATE_DIRS]
    lines += [f"mount --bind {q(str(base / 'hosts'))} /etc/hosts",
              f"hostname {q(host.name)}",
              "mkdir -p /run/sshd",
              f"{SSHD} -f {q(str(base / 'sshd_config'))} -E {q(str(base / 'sshd.log'))}",
              "exec sleep infinity"]
    return "\n".join(lines) + "\n"


def start(host: LabHost) -> subprocess.Popen:
    """Start the host's init in its namespace; fills in host.pid/started."""
    base = Path(host.dir)
    with open(base / "init.log", "wb") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "/bin/sh", str(base / "init.sh")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    host.pid = proc.pid
    host.started = start_time(proc.pid) or 0
    return proc
