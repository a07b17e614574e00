"""Host key trust: verify against the site's known_hosts, refuse unknown or changed keys, record keys on request."""
from __future__ import annotations

import base64
import hashlib
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import paramiko

from edge_hosts.access.state import write_private


class HostKeyError(Exception):
    """An unknown or changed host key; the message says what to do."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_name(address: str, port: int) -> str:
    """The name a host goes by in known_hosts."""
    return address if port == 22 else f"[{address}]:{port}"


def known_hosts_problem(path: Path) -> str | None:
    """Why the site's known_hosts could not be read as paramiko reads it (None when it can, or is not there yet:
    then every key is unknown, and edge.trust records them)."""
    if path.is_dir():
        return f"{path} is a directory, where a known_hosts file is needed"
    if not path.exists():
        return None
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        return f"{path} cannot be read: {getattr(err, 'strerror', None) or err}"
    for number, line in enumerate(lines, 1):
        try:
            paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError):
            return f"{path}: line {number} is not a valid host key entry (fix or remove it, then edge.trust)"
    return None


def load_known_hosts(path: Path) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    if path.is_file():
        keys.load(str(path))
    return keys


class RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """Refuse hosts missing from known_hosts, showing the fingerprint and how to trust it."""

    def __init__(self, site: str, known_hosts: Path):
        self.site, self.known_hosts = site, known_hosts

    def missing_host_key(self, client, hostname, key):
        raise HostKeyError(
            f"unknown host key for {hostname} ({key.get_name()} {fingerprint(key)}), not in {self.known_hosts}; "
            f"check the fingerprint, then record it with: ./kit edge.trust --site {self.site}")


def changed_key_message(site: str, name: str, known_hosts: Path, expected: paramiko.PKey,
                        got: paramiko.PKey) -> str:
    return (f"HOST KEY CHANGED for {name}: known_hosts has {fingerprint(expected)}, the host offers "
            f"{fingerprint(got)}. Refusing to connect (possible man-in-the-middle). If the host was reinstalled, "
            f"remove the old key (ssh-keygen -R '{name}' -f {known_hosts}) and run ./kit edge.trust --site {site}")


def scan(address: str, port: int, timeout: float) -> paramiko.PKey:
    """The host key a server offers (no authentication)."""
    sock = socket.create_connection((address, port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


@dataclass(frozen=True)
class TrustResult:
    host: str
    name: str
    key_type: str
    fingerprint: str
    status: str  # "trusted" (already known), "new" (to record), "changed" (refused), "unreachable"
    detail: str = ""


def classify(known: paramiko.HostKeys, host: str, name: str, key: paramiko.PKey) -> TrustResult:
    entry = known.lookup(name)
    if entry is None:
        status = "new"
    elif key.get_name() in entry and entry[key.get_name()] == key:
        status = "trusted"
    else:
        status = "changed"
    return TrustResult(host, name, key.get_name(), fingerprint(key), status)


def record(path: Path, keys: list[tuple[str, paramiko.PKey]]) -> None:
    """Append host keys to known_hosts (created 0600 if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{name} {key.get_name()} {key.get_base64()}\n" for name, key in keys)
    existing = path.read_text() if path.is_file() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    write_private(path, existing + lines)


def survey(hosts: list[tuple[str, str, int]], known_hosts: Path,
           timeout: float) -> list[tuple[TrustResult, paramiko.PKey | None]]:
    """Scan each (host, address, port) in parallel and compare with known_hosts."""
    known = load_known_hosts(known_hosts)

    def one(item: tuple[str, str, int]):
        host, address, port = item
        name = known_name(address, port)
        try:
            key = scan(address, port, timeout)
        except (OSError, paramiko.SSHException, EOFError) as err:
            return TrustResult(host, name, "", "", "unreachable", str(err) or type(err).__name__), None
        return classify(known, host, name, key), key

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(hosts)))) as pool:
        return list(pool.map(one, hosts))
