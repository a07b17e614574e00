"""One SSH connection per host (paramiko): verified host keys, retries with backoff, sudo via stdin, atomic uploads."""
from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import shlex
import socket
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paramiko

from edge_hosts.access.hostkeys import HostKeyError, RefuseUnknownHost, changed_key_message, known_name
from edge_hosts.inventory.model import Host, Inventory

# paramiko 5.1's transport thread logs a failed handshake (a host that drops the connection before its banner)
# at ERROR with a traceback (transport.py Transport.run); with no handler, logging's last resort printed it on
# stderr. The error reaches the caller (saved_exception) and is reported as the host's result instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

UPLOAD_PREFIX = ".kit-upload-"
PART_SUFFIX = ".part"  # a file's staged upload, kept across runs to resume


class TransportError(Exception):
    """The link to a host failed (unreachable, dropped, timed out); worth retrying."""


class RemoteError(Exception):
    """A remote command failed; the message is safe to show (secrets redacted)."""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def redact(text: str, secret_values: set[str]) -> str:
    for value in secret_values:
        if value:
            text = text.replace(value, "***")
    return text


def sha256_file(path: Path) -> str:
    return sha256_prefix(path, path.stat().st_size)


def sha256_prefix(path: Path, size: int) -> str:
    """sha256 of the first `size` bytes of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while size > 0:
            chunk = handle.read(min(1 << 20, size))
            if not chunk:
                break
            digest.update(chunk)
            size -= len(chunk)
    return digest.hexdigest()


class HostSession:
    """A host's single SSH connection, reused for every command and upload of a run."""

    def __init__(self, inventory: Inventory, host: Host, command_timeout: float = 300):
        self.inventory, self.host = inventory, host
        self.settings = inventory.ssh_for(host)
        self.command_timeout = command_timeout
        self.secrets: set[str] = set()
        self.sudo_password = self._sudo_password()
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._passwordless_sudo: bool | None = None  # probed once per session, only when a password is configured
        self.upload_slots: threading.Semaphore | nullcontext = nullcontext()  # shared by a site's sessions
        self.on_attempt: Callable[[int, int, float], None] | None = None  # each connection attempt (n, m, s left)
        self.cancelled = False  # cut off (a second Ctrl-C): no command runs again

    def _sudo_password(self) -> str | None:
        env = self.settings.sudo_password_env
        if env is None or self.settings.user == "root":
            return None
        value = os.environ.get(env)
        if value is None:
            raise RemoteError(f"ssh.sudoPasswordEnv names {env}, but that environment variable is not set")
        self.secrets.add(value)
        return value

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect (or reconnect), retrying unreachable hosts with exponential backoff; each attempt is reported to
        `on_attempt` (attempt n, of m, at most this many seconds left). Refused once the session is cancelled."""
        self.close()
        if self.cancelled:
            raise TransportError(f"connection to {self.host.address} cut off (the run was interrupted)")
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            if self.on_attempt is not None:
                self.on_attempt(attempt + 1, attempts, self._seconds_left(attempt, attempts))
            try:
                self._client = self._open()
                return
            except TransportError as err:
                if attempt == attempts - 1:
                    raise TransportError(f"{err} (attempt {attempts} of {attempts})") from None
                time.sleep(_backoff(attempt))

    def _seconds_left(self, attempt: int, attempts: int) -> float:
        """The longest the attempts from `attempt` on can take: each its connect timeout, the backoffs between."""
        return sum(self.settings.connect_timeout + (_backoff(i) if i < attempts - 1 else 0)
                   for i in range(attempt, attempts))

    def _open(self) -> paramiko.SSHClient:
        s, site = self.settings, self.inventory.site
        client = paramiko.SSHClient()
        if s.known_hosts.is_file():  # a missing file trusts nothing: every key is refused as unknown
            client.load_system_host_keys(str(s.known_hosts))
        client.set_missing_host_key_policy(RefuseUnknownHost(site, s.known_hosts))
        try:
            client.connect(str(self.host.address), port=s.port, username=s.user,
                           key_filename=None if s.use_agent or not s.key_file else str(s.key_file),
                           allow_agent=s.use_agent, look_for_keys=False, timeout=s.connect_timeout,
                           banner_timeout=s.connect_timeout, auth_timeout=s.connect_timeout)
        except paramiko.BadHostKeyException as err:
            client.close()
            name = known_name(str(self.host.address), s.port)
            raise HostKeyError(changed_key_message(site, name, s.known_hosts, err.expected_key, err.key)) from None
        except paramiko.AuthenticationException as err:
            client.close()
            raise RemoteError(f"ssh authentication as {s.user} failed: {err}") from None
        except HostKeyError:
            client.close()
            raise
        except (OSError, paramiko.SSHException, EOFError) as err:
            client.close()
            raise TransportError(f"cannot reach {self.host.address}:{s.port}: {err or type(err).__name__}") from None
        transport = client.get_transport()
        transport.set_keepalive(15)
        if isinstance(transport.sock, socket.socket):
            # small request/response packets: without this, Nagle + delayed ACKs stall each command ~40-90 ms
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                # paramiko retries a send the kernel cannot take forever (paramiko 5.1 packet.py write_all): on a cut
                # link the kernel ends the connection once sent data stays unacknowledged this long (tcp(7), Linux)
                # instead of after ~15 minutes of retransmissions
                transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(self.silence_s * 1000))
        return client

    @property
    def silence_s(self) -> float:
        """How long a link may stay silent during a transfer before it counts as dropped."""
        return max(3 * self.settings.connect_timeout, 10)

    def _ensure_connected(self) -> None:
        """Connect when there is no connection or it died while idle (a dropped link, a restarted sshd): nothing was
        sent on it yet, so a new one is as good."""
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            self.connect()

    def cancel(self) -> None:
        """Cut the connection off for good (from any thread): commands in progress end, none starts again."""
        self.cancelled = True
        self.close()

    def close(self) -> None:
        """Close the connection; a link that already died is fine."""
        for resource in (self._sftp, self._client):
            if resource is not None:
                try:
                    resource.close()
                except (OSError, paramiko.SSHException, EOFError):
                    pass
        self._client = self._sftp = None

    # -- commands ---------------------------------------------------------------------------
    def _command(self, sudo: bool, shell: str = "sh -s") -> tuple[str, bytes]:
        if not sudo or self.settings.user == "root":
            return shell, b""
        if self.sudo_password is None or self._sudo_is_passwordless():
            return f"sudo -n {shell}", b""
        # sudo asks (-k forgets cached credentials), so the first stdin line is consumed as the password,
        # never run as a command
        return f"sudo -k -S -p '' {shell}", self.sudo_password.encode() + b"\n"

    def _sudo_is_passwordless(self) -> bool:
        """Whether sudo runs without a password here (NOPASSWD): then the password must never be sent."""
        if self._passwordless_sudo is None:
            self._passwordless_sudo = self._exchange("sudo -n true", b"", self.command_timeout).code == 0
        return self._passwordless_sudo

    def run(self, script: str, sudo: bool = True, timeout: float | None = None, reveal: bool = False) -> Result:
        """Run a shell script sent on stdin (never in argv), as root when sudo is set; known secrets are redacted
        from its output unless `reveal` (for reading a secret itself)."""
        self._ensure_connected()
        command, prefix = self._command(sudo)
        result = self._exchange(command, prefix + script.encode(), timeout or self.command_timeout)
        if reveal:
            return Result(result.code, result.out, redact(result.err, self.secrets))
        return Result(result.code, redact(result.out, self.secrets), redact(result.err, self.secrets))

    def _exchange(self, command: str, stdin: bytes, timeout: float) -> Result:
        """Run `command`, feed it `stdin`, collect stdout and stderr together (neither can stall the other)."""
        try:
            channel = self._client.get_transport().open_session(timeout=self.settings.connect_timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            channel.sendall(stdin)
            channel.shutdown_write()
            errors: list[bytes | BaseException] = []
            reader = threading.Thread(target=_read_into, args=(channel.makefile_stderr("rb"), errors), daemon=True)
            reader.start()
            out = channel.makefile("rb").read()
            reader.join()
            if isinstance(errors[0], BaseException):
                raise errors[0]
            code = channel.recv_exit_status()
            channel.close()
        except (OSError, paramiko.SSHException, EOFError, AttributeError) as error:
            raise TransportError(f"connection to {self.host.address} lost: {error or type(error).__name__}") from None
        return Result(code, out.decode(errors="replace"), errors[0].decode(errors="replace"))

    def start(self, script: str, sudo: bool = True) -> paramiko.Channel:
        """Start a long-running script whose stdin stays open to the caller, who owns the returned channel. The
        script goes in argv (stdin is the caller's): it must hold no secret."""
        self._ensure_connected()
        command, prefix = self._command(sudo, f"sh -c {shlex.quote(script)}")
        try:
            channel = self._client.get_transport().open_session(timeout=self.settings.connect_timeout)
            channel.exec_command(command)
            channel.sendall(prefix)
        except (OSError, paramiko.SSHException, EOFError, AttributeError) as error:
            raise TransportError(f"connection to {self.host.address} lost: {error or type(error).__name__}") from None
        return channel

    def check(self, script: str, what: str, sudo: bool = True, timeout: float | None = None,
              reveal: bool = False) -> str:
        """Run a script; raise RemoteError saying what failed (with its last stderr lines) unless it exits 0."""
        result = self.run(script, sudo=sudo, timeout=timeout, reveal=reveal)
        if result.code != 0:
            detail = " | ".join((result.err or ("" if reveal else result.out)).strip().splitlines()[-3:])
            raise RemoteError(f"{what} failed (exit {result.code}): {detail}")
        return result.out

    # -- uploads ----------------------------------------------------------------------------
    def _sftp_client(self) -> paramiko.SFTPClient:
        self._ensure_connected()
        if self._sftp is None:
            self._sftp = self._client.open_sftp()
            self._sftp.get_channel().settimeout(self.silence_s)
            self._remove_stale_uploads(self._sftp)
        return self._sftp

    def _remove_stale_uploads(self, sftp: paramiko.SFTPClient) -> None:
        """Temp files an interrupted earlier run left in the login home (never the target paths); the parts of
        files stay, for the next upload of that file to resume."""
        prefix = f"{UPLOAD_PREFIX}{self.host.name}-"
        for name in sftp.listdir("."):
            if name.startswith(prefix) and not name.endswith(PART_SUFFIX):
                sftp.remove(name)

    def upload(self, source: Path | bytes, remote: str, mode: str, sha256: str) -> None:
        """Atomically install a file: staged in the login home (0600), sha256 verified, moved into place with one
        rename. A file (bytes are small and may be secret: never kept) is staged as a part that outlives a dropped
        link, so the next upload of it sends only the rest."""
        if isinstance(source, bytes):
            staged, offset, stream = f"{UPLOAD_PREFIX}{self.host.name}-{secrets.token_hex(6)}", 0, io.BytesIO(source)
        else:
            staged = self._part_name(remote, sha256)
            offset, stream = self._resume_offset(staged, remote, source), open(source, "rb")
        with stream:
            home = self._send(stream, staged, offset, remote)
        self._install(f"{home}/{staged}", remote, mode, sha256)

    def _part_name(self, remote: str, sha256: str) -> str:
        """The staged part of this content for this target (one name per target and content)."""
        target = hashlib.sha256(remote.encode()).hexdigest()[:8]
        return f"{UPLOAD_PREFIX}{self.host.name}-{target}-{sha256[:16]}{PART_SUFFIX}"

    def _resume_offset(self, part: str, remote: str, source: Path) -> int:
        """How much of `source` an earlier upload left staged: the part's size when its bytes are the file's first
        bytes (sha256 compared), else 0 and the part removed. Parts of other content for the target go too."""
        others, q = f"{shlex.quote(part.rsplit('-', 1)[0])}-*{PART_SUFFIX}", shlex.quote(part)
        out = self.check(f"""cd || exit 1
for f in {others}; do [ "$f" = {q} ] || rm -f -- "$f"; done
[ -f {q} ] && echo "$(wc -c < {q}) $(sha256sum < {q} | cut -c1-64)"
exit 0
""", f"checking the staged part of {remote}", sudo=False).split()
        if not out:
            return 0
        size, digest = int(out[0]), out[1]
        if size <= source.stat().st_size and sha256_prefix(source, size) == digest:
            return size
        self.check(f"cd && rm -f -- {q}\n", f"removing the corrupt part of {remote}", sudo=False)
        return 0

    def _send(self, stream, name: str, offset: int, remote: str) -> str:
        """Write `stream` from `offset` on to `name` in the login home (0600 before its first byte), one of at most
        `upload_slots` transfers to the site at a time; return the home's path."""
        stream.seek(offset)
        try:
            sftp = self._sftp_client()
            home = sftp.normalize(".")
            with self.upload_slots, sftp.open(name, "r+b" if offset else "wb") as handle:
                if not offset:
                    sftp.chmod(name, 0o600)
                handle.seek(offset)
                handle.set_pipelined(True)
                for chunk in iter(lambda: stream.read(1 << 16), b""):
                    handle.write(chunk)
        except (OSError, paramiko.SSHException, EOFError) as error:
            raise TransportError(f"upload of {remote} to {self.host.address} interrupted: "
                                 f"{str(error) or type(error).__name__}") from None
        return home

    def _install(self, src: str, remote: str, mode: str, sha256: str) -> None:
        """The staged file verified as a whole and renamed into place; it is removed either way (a part whose
        whole does not match must not be resumed)."""
        staged = f"{os.path.dirname(remote)}/.{os.path.basename(remote)}.kit-new"
        self.check(f"""set -e
src={shlex.quote(src)}; dst={shlex.quote(remote)}; staged={shlex.quote(staged)}
trap 'rm -f "$src" "$staged"' EXIT
mkdir -p "$(dirname "$dst")"
install -m {mode} "$src" "$staged"
echo "{sha256}  $staged" | sha256sum -c --status || {{ echo "sha256 mismatch after upload of $dst" >&2; exit 41; }}
mv -f "$staged" "$dst"
""", f"installing {remote}")


def _backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (0-based) before the next."""
    return min(0.5 * 2 ** attempt, 8)


def _read_into(stream, sink: list) -> None:
    """Read a stream to its end into `sink` (the bytes, or the exception that stopped the read)."""
    try:
        sink.append(stream.read())
    except (OSError, paramiko.SSHException, EOFError) as error:
        sink.append(error)
