"""One run per site: a task that changes a site holds its lock here (run.lock in the site's state directory) and
on its first server (/var/lib/rancher/mlops-edge-kit/site.lock, which k3s's uninstall leaves alone). Both are
kernel locks (flock) on files naming the holder (host, user, pid, start time, task). The kernel lets go when the
holder ends, so a dead run's lock is free at once and a live run's is never taken: the stale rule is the
holder's life, not a guess from the file. On the server the holder is a shell kept by the run's own SSH session:
it lets go when that session ends, or when the run's heartbeat (every HEARTBEAT_S) has stopped for LEASE_S (a run
whose machine vanished without closing its connection)."""
from __future__ import annotations

import datetime
import fcntl
import getpass
import json
import os
import shlex
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from edge_hosts.access.hostkeys import HostKeyError
from edge_hosts.access.ssh import HostSession, RemoteError, TransportError
from edge_hosts.access.state import site_dir
from edge_hosts.inventory.model import Inventory

REMOTE_DIR = "/var/lib/rancher/mlops-edge-kit"
LEASE_S = 60  # the server lets go of a run whose heartbeats stopped this long ago
HEARTBEAT_S = 10
RELEASE_WAIT_S = 10  # for the server's holder to clear its file as the run ends
BUSY, NO_FLOCK = 75, 76  # the server-side script's exit codes


class SiteBusy(Exception):
    """Another run holds the site's lock; the message names it."""


class LockError(Exception):
    """The lock could not be taken (not because another run holds it); the message says why."""


@dataclass(frozen=True)
class Holder:
    host: str
    user: str
    pid: int
    started: str  # UTC, ISO 8601
    task: str
    pid_start: int = 0  # the process's start time in clock ticks since boot (a reused pid has another)

    @classmethod
    def me(cls, task: str) -> "Holder":
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
        return cls(socket.gethostname(), getpass.getuser(), os.getpid(), now, task, _pid_start(os.getpid()))

    @classmethod
    def parse(cls, text: str) -> "Holder | None":
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None

    def describe(self) -> str:
        return f"{self.task} by {self.user}@{self.host}, pid {self.pid}, since {self.started}"

    def dead_here(self) -> bool:
        """The holder ran on this machine and its process is gone (or its pid now belongs to another)."""
        return self.host == socket.gethostname() and _pid_start(self.pid) != self.pid_start


def _pid_start(pid: int) -> int:
    """A process's start time (clock ticks after boot, field 22 of /proc/<pid>/stat); 0 when there is none."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


class LocalLock:
    """The site's lock on this machine: run.lock in its state directory, flock'd while the run lasts."""

    def __init__(self, site: str):
        self.path = site_dir(site) / "run.lock"
        self._fd: int | None = None

    def acquire(self, holder: Holder) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise LockError(f"{self.path}: cannot create the site's lock file: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = Holder.parse(os.pread(fd, 4096, 0).decode(errors="replace"))
            os.close(fd)
            raise SiteBusy(f"{other.describe() if other else 'another run'} (lock {self.path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing lets go of the flock; the file stays (unlinking it would race a taker)
            self._fd = None


def remote_script(holder: Holder, lease_s: float) -> str:
    """The shell that takes and holds the server's lock: prints `locked`, then holds while a heartbeat byte
    arrives within every `lease_s`; busy, it prints the holder and exits BUSY."""
    lock = f"{REMOTE_DIR}/site.lock"
    return f"""command -v flock >/dev/null 2>&1 || exit {NO_FLOCK}
mkdir -p {REMOTE_DIR} && chmod 700 {REMOTE_DIR} || exit 1
exec 9>>{lock} || exit 1
flock -n 9 || {{ cat {lock}; exit {BUSY}; }}
printf '%s\\n' {shlex.quote(json.dumps(asdict(holder)))} > {lock}
echo locked
while [ "$(timeout {lease_s:g} head -c1)" = h ]; do :; done
: > {lock}
"""


class RemoteLock:
    """The site's lock on its first server, held by a shell on a connection of its own."""

    def __init__(self, inventory: Inventory, lease_s: float = LEASE_S, heartbeat_s: float = HEARTBEAT_S):
        self.host = inventory.first_server
        self.session = HostSession(inventory, self.host, command_timeout=max(30.0, 3 * heartbeat_s))
        self.lease_s, self.heartbeat_s = lease_s, heartbeat_s
        self.on_lost: Callable[[str], None] | None = None  # told when the server let go while the run went on
        self.on_wait: Callable[[Holder], None] | None = None  # told once when a dead run's lock is waited for
        self._channel = None
        self._done = threading.Event()

    def acquire(self, holder: Holder) -> None:
        """Take the server's lock; a holder that died on this machine is waited for (its session is ending)."""
        deadline, waited = time.monotonic() + self.lease_s + self.heartbeat_s, False
        while True:
            other = self._try(holder)
            if other is None:
                break
            parsed = Holder.parse(other)
            if not (parsed and parsed.dead_here()) or time.monotonic() > deadline:
                raise SiteBusy(f"{parsed.describe() if parsed else 'another run'} (lock {REMOTE_DIR}/site.lock on "
                               f"{self.host.name}; a run that died lets go of it within {self.lease_s:g} s of its "
                               f"last heartbeat)")
            if not waited and self.on_wait:
                self.on_wait(parsed)
            waited = True
            time.sleep(1)
        threading.Thread(target=self._heartbeat, name="site-lock", daemon=True).start()

    def _try(self, holder: Holder) -> str | None:
        """None when the lock is ours; else what the server says of its holder."""
        try:
            channel = self.session.start(remote_script(holder, self.lease_s))
            channel.settimeout(self.session.settings.connect_timeout + 30)
            first = channel.makefile("rb").readline().decode(errors="replace")
        except (TransportError, RemoteError, HostKeyError, OSError) as err:
            raise LockError(f"cannot take the site's lock on {self.host.name}: {err}") from None
        if first.strip() == "locked":
            self._channel = channel
            return None
        rest = first + channel.makefile("rb").read().decode(errors="replace")
        code = channel.recv_exit_status()
        channel.close()
        if code == BUSY:
            return rest.strip()
        if code == NO_FLOCK:
            raise LockError(f"{self.host.name} has no flock command (util-linux): the site's lock needs it")
        raise LockError(f"cannot take the site's lock on {self.host.name} (exit {code}): {rest.strip()[-200:]}")

    def _heartbeat(self) -> None:
        while not self._done.wait(self.heartbeat_s):
            try:
                self._channel.sendall(b"h")
            except (OSError, EOFError, AttributeError):
                pass  # the link may come back before the lease runs out
            if self._channel.exit_status_ready() and not self._done.is_set() and self.on_lost:
                self.on_lost(f"the site's lock on {self.host.name} lapsed (no heartbeat reached it for "
                             f"{self.lease_s:g} s)")
                return

    def release(self) -> None:
        """End the heartbeats: the holder clears the file and exits (waited for a while: over a cut link closing
        the connection does it, or the lease)."""
        self._done.set()
        if self._channel is not None:
            try:
                self._channel.shutdown_write()
            except (OSError, EOFError):
                pass
            deadline = time.monotonic() + RELEASE_WAIT_S
            while not self._channel.exit_status_ready() and time.monotonic() < deadline:
                time.sleep(0.02)
        self.session.close()


class SiteLock:
    """Both locks of a site for one task, here first (no network), then on the first server."""

    def __init__(self, inventory: Inventory, task: str):
        self.holder = Holder.me(task)
        self.local, self.remote = LocalLock(inventory.site), RemoteLock(inventory)

    def acquire(self) -> None:
        self.local.acquire(self.holder)
        try:
            self.remote.acquire(self.holder)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        self.remote.release()
        self.local.release()
