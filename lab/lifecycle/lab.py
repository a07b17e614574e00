"""A lab: N simulated edge hosts on a private bridge, with the files the kit needs to reach them."""
import json
import os
import shlex
import shutil
import socket
import time
from pathlib import Path

from lab.hosts import host as hostmod, network
from lab.hosts.arch import set_machine
from lab.hosts.clock import set_clock
from lab.hosts.host import LabHost
from lab.hosts.hostops import install_reboot, install_selinux_policy, reimage, set_selinux_enforcing
from lab.hosts.kernel import unload_br_netfilter
from lab.hosts.keys import new_keypair
from lab.hosts.procs import is_alive
from lab.lifecycle import claims
from lab.lifecycle.inventory import K3S_VERSION, METALLB_VERSION, site_document, write_site
from lab.releases.artifacts import STANDINS, build_bundle

MAX_HOSTS = 100
FIRST_HOST_OCTET = 11
BOOT_TIMEOUT = 30.0


class LabError(RuntimeError):
    """The lab could not be built or found."""


class Lab:
    """A running lab; build one with `Lab.up(...)`, find one with `Lab.load(out_dir)`."""

    def __init__(self, number: int, out_dir: Path, hosts: list[LabHost]):
        self.number = number
        self.out_dir = Path(out_dir).resolve()
        self.hosts = hosts

    # --- names and files -------------------------------------------------------------------
    @property
    def bridge(self) -> str:
        return claims.bridge_name(self.number)

    @property
    def subnet(self) -> str:
        return claims.subnet_of(self.number)

    @property
    def gateway(self) -> str:
        return f"10.213.{self.number}.1"

    @property
    def metallb_range(self) -> str:
        return f"10.213.{self.number}.200-10.213.{self.number}.220"

    @property
    def site_file(self) -> Path:
        return self.out_dir / "site.yaml"

    @property
    def key_file(self) -> Path:
        return self.out_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.out_dir / "known_hosts"

    @property
    def state_file(self) -> Path:
        return self.out_dir / "state.json"

    def host(self, name: str) -> LabHost:
        for candidate in self.hosts:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no lab host named {name!r}")

    # --- life cycle ------------------------------------------------------------------------
    @classmethod
    def up(cls, hosts: int, servers: int = 1, out_dir: Path | str = "out/lab",
           timings: dict | None = None) -> "Lab":
        """Boot `hosts` hosts (the first `servers` of them have role server).

        `timings` tunes the stand-ins (see lab.releases.artifacts.DEFAULT_TIMINGS), e.g. the seconds
        MetalLB's webhook refuses pools after its endpoints appear.
        """
        _check_request(hosts, servers)
        out = Path(out_dir).resolve()
        out.mkdir(parents=True, exist_ok=True)
        _refuse_running_lab(out)
        number = claims.claim(out / "state.json")
        lab = cls(number, out, [])
        try:
            lab._build(hosts, servers, timings)
        except BaseException:
            lab.down()
            raise
        return lab

    @classmethod
    def load(cls, out_dir: Path | str = "out/lab") -> "Lab":
        state_file = Path(out_dir).resolve() / "state.json"
        try:
            state = json.loads(state_file.read_text())
        except FileNotFoundError:
            raise LabError(f"{state_file}: no lab state here (is the lab up?)") from None
        return cls(state["number"], state_file.parent, [LabHost(**h) for h in state["hosts"]])

    def down(self) -> None:
        """Stop every process, remove namespaces, bridge and claim; works after partial failures."""
        claims.teardown(self.number)
        claims.release(self.number)
        self.state_file.unlink(missing_ok=True)

    def is_running(self) -> bool:
        return bool(self.hosts) and all(is_alive(h.pid, h.started) for h in self.hosts)

    @property
    def bundle(self) -> Path:
        return self.out_dir / "bundle"

    def _build(self, count: int, servers: int, timings: dict | None) -> None:
        claims.lab_dir(self.number).mkdir(mode=0o711)
        network.create_bridge(self.bridge, f"{self.gateway}/24")
        public_key = new_keypair(self.key_file, f"mlops-lab-{self.number}")
        authorized = claims.lab_dir(self.number) / "authorized_keys"
        authorized.write_text(public_key + "\n")
        self.hosts = [self._new_host(i, servers) for i in range(count)]
        etc_hosts = _etc_hosts(self.hosts)
        known = []
        for h in self.hosts:
            network.add_host_link(h.netns, h.veth, self.bridge)
            hostmod.prepare_files(h, self.gateway, 24, authorized, etc_hosts)
            for name in ("systemctl", "systemctl.py", "units.py", "journalctl"):
                shutil.copy2(STANDINS / name, h.path_on_host(f"/usr/local/sbin/{name}"))
            set_clock(h)  # a host whose clock is synchronized (timedatectl), the machine's own time
            host_key = new_keypair(Path(h.dir) / "ssh_host_ed25519_key", h.name)
            known.append(f"{h.address} {' '.join(host_key.split()[:2])}")
        inits = [hostmod.start(h) for h in self.hosts]
        for h in self.hosts:
            install_reboot(h)
        self._save_state()
        _wait_for_sshd(self.hosts, inits)
        shutil.rmtree(self.bundle, ignore_errors=True)
        build_bundle(self.bundle, K3S_VERSION, METALLB_VERSION, timings)
        self.known_hosts.write_text("\n".join(known) + "\n")
        write_site(self.site_file, site_document(
            "lab", self.hosts, self.key_file, self.known_hosts, self.subnet,
            self.metallb_range, bundle=self.bundle))

    def _new_host(self, index: int, servers: int) -> LabHost:
        name = f"edge-{index + 1}"
        return LabHost(name=name, address=f"10.213.{self.number}.{FIRST_HOST_OCTET + index}",
                       role="server" if index < servers else "agent",
                       netns=f"{claims.netns_prefix(self.number)}{name}",
                       veth=f"{claims.veth_prefix(self.number)}{index + 1}",
                       dir=str(claims.lab_dir(self.number) / name))

    def _save_state(self) -> None:
        state = {"number": self.number, "hosts": [h.to_dict() for h in self.hosts]}
        self.state_file.write_text(json.dumps(state, indent=2))
        claims.write_claim(self.number, self.state_file,
                           [(h.pid, h.started) for h in self.hosts])

    # --- helpers for tests -----------------------------------------------------------------
    def exec(self, host: str, command: str, **kwargs):
        """Run a shell command as root inside a host; see LabHost.exec."""
        return self.host(host).exec(command, **kwargs)

    def cut_link(self, host: str) -> None:
        self.host(host).set_link(up=False)

    def restore_link(self, host: str) -> None:
        self.host(host).set_link(up=True)

    def limit_link(self, host: str, rate: str | None) -> None:
        """A thin link to a host (token bucket, e.g. '16mbit'); None lifts it."""
        self.host(host).limit_link(rate)

    def process_argvs(self, host: str) -> list[list[str]]:
        return self.host(host).process_argvs()

    def set_arch(self, host: str, machine: str, long_bit: int | None = None) -> None:
        """Make `host` report `uname -m` = machine (aarch64, armv7l, ...); see lab.hosts.arch."""
        set_machine(self.host(host), machine, long_bit)

    def reimage(self, host: str) -> None:
        """Wipe `host` as a fresh install under the same name (see lab.hosts.hostops.reimage)."""
        reimage(self.host(host))

    def set_selinux_enforcing(self, host: str, policy: bool = False) -> None:
        """SELinux enforcing on `host`, with the k3s-selinux policy package installed when `policy`."""
        set_selinux_enforcing(self.host(host))
        if policy:
            install_selinux_policy(self.host(host))

    def selinux_label(self, host: str, path: str) -> str:
        """A file's SELinux context on an enforcing `host`, as `ls -Z` shows it (lab/standins/selinux.py)."""
        return self.exec(host, f"selinux-label {shlex.quote(path)}").stdout.split()[0]

    def set_clock(self, host: str, offset_s: int = 0, synced: bool = True) -> None:
        """`host`'s clock `offset_s` seconds off the machine's, synchronized or not; see lab.hosts.clock."""
        set_clock(self.host(host), offset_s, synced)

    def unload_br_netfilter(self, host: str, available: bool = True) -> None:
        """br_netfilter not loaded on `host` (loadable, or missing from its kernel); see lab.hosts.kernel."""
        unload_br_netfilter(self.host(host), available)


def _check_request(hosts: int, servers: int) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, bridges, mounts)")
    if not 1 <= hosts <= MAX_HOSTS:
        raise LabError(f"hosts must be between 1 and {MAX_HOSTS}, got {hosts}")
    if not 1 <= servers <= hosts:
        raise LabError(f"servers must be between 1 and hosts ({hosts}), got {servers}")
    if not Path(hostmod.SSHD).exists():
        raise LabError(f"{hostmod.SSHD} is missing: install openssh-server (./kit test does)")


def _refuse_running_lab(out: Path) -> None:
    if (out / "state.json").exists():
        existing = Lab.load(out)
        if existing.is_running():
            raise LabError(f"a lab is already up in {out}; run lab.down first")
        existing.down()


def _etc_hosts(hosts: list[LabHost]) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost"]
    return "\n".join(lines + [f"{h.address} {h.name}" for h in hosts]) + "\n"


def _wait_for_sshd(hosts: list[LabHost], inits: list) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    pending = list(zip(hosts, inits))
    while pending:
        for h, init in list(pending):
            if init.poll() is not None:
                log = (Path(h.dir) / "init.log").read_text(errors="replace").strip()
                raise LabError(f"host {h.name} failed to boot: {log}")
            if _port_open(h.address, 22):
                pending.remove((h, init))
        if pending and time.monotonic() > deadline:
            raise LabError(f"sshd did not come up on {', '.join(h.name for h, _ in pending)}")
        if pending:
            time.sleep(0.05)


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False
