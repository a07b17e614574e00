"""On-site snapshots of a server's datastore: `k3s etcd-snapshot save` on etcd servers, a consistent copy of the
db directory and the server token on single-server sqlite sites.

docs.k3s.io (github.com/k3s-io/docs, docs/datastore/backup-restore.md and docs/cli/etcd-snapshot.md): snapshots
are saved to `etcd-snapshot-dir` (default ${data-dir}/server/db/snapshots) named `<name>-<node>-<unix time>`, the
save logs "Snapshot <name> saved."; an sqlite datastore is backed up by copying /var/lib/rancher/k3s/server/db/
and the server token (`k3s etcd-snapshot` answers "etcd datastore disabled" there)."""
from __future__ import annotations

import base64
import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path

from common import k3s
from edge_hosts.inventory.model import Host, Inventory
from edge_hosts.access.ssh import HostSession, RemoteError

SERVER_DIR = "/var/lib/rancher/k3s/server"
DB_DIR = f"{SERVER_DIR}/db"
ETCD_DIR = f"{DB_DIR}/etcd"       # exists on servers with embedded etcd; sqlite keeps db/state.db
SQLITE_SUFFIX = ".sqlite.tar.gz"  # the kit's datastore copy of an sqlite server (db/ and token)


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot on a server: its file, size and sha256, and the datastore it holds (etcd | sqlite)."""
    name: str
    path: str
    size: int
    sha256: str
    datastore: str


def snapshot_dir(inventory: Inventory) -> str:
    """Where the servers keep snapshots: the serverConfig's etcd-snapshot-dir, else k3s's default."""
    return str(inventory.k3s.server_config.get("etcd-snapshot-dir") or k3s.SNAPSHOT_DIR)


def datastore(session: HostSession) -> str:
    """etcd when the server runs embedded etcd (db/etcd exists), else sqlite."""
    out = session.check(f"[ -d {ETCD_DIR} ] && echo etcd || echo sqlite\n", "reading the datastore kind")
    return out.strip()


def save(session: HostSession, inventory: Inventory, host: Host, name: str) -> SnapshotInfo:
    """A fresh snapshot on `host` (a server) named `name`-<node>-<unix time>."""
    kind = datastore(session)
    script = _next_second(snapshot_dir(inventory), f"{name}-{host.name}") + (
        _etcd_save(name) if kind == "etcd" else _sqlite_save(inventory, host, name))
    out = session.check(script + _describe(snapshot_dir(inventory)), f"saving a {kind} snapshot on {host.name}")
    facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return SnapshotInfo(facts["name"], facts["path"], int(facts["size"]), facts["sha256"], kind)


def _next_second(directory: str, prefix: str) -> str:
    """Wait while a snapshot of this second exists: names carry the unix time in seconds, so a second save within
    the same second would overwrite the first (k3s names etcd snapshots the same way)."""
    return f"""while ls {shlex.quote(directory)}/{shlex.quote(prefix)}-"$(date +%s)"* >/dev/null 2>&1; do sleep 0.2; done
"""


def _etcd_save(name: str) -> str:
    """k3s etcd-snapshot save reads the server's config.yaml (etcd-snapshot-dir, -compress) and logs the name."""
    return f"""out=$(k3s etcd-snapshot save --name {shlex.quote(name)} 2>&1) || {{ printf '%s\\n' "$out" >&2; exit 1; }}
snap=$(printf '%s\\n' "$out" | sed -n 's/.*Snapshot \\([^ ]*\\) saved\\..*/\\1/p' | tail -n 1)
[ -n "$snap" ] || {{ printf 'no snapshot name in: %s\\n' "$out" >&2; exit 1; }}
"""


def _sqlite_save(inventory: Inventory, host: Host, name: str) -> str:
    """k3s stopped for the copy (sqlite's files are consistent only at rest; the workloads keep running) and
    started again whatever happened, then waited for."""
    wait = max(1, round(inventory.k3s.join_timeout))
    return f"""dir={shlex.quote(snapshot_dir(inventory))}
snap={shlex.quote(f"{name}-{host.name}")}-$(date +%s){SQLITE_SUFFIX}
mkdir -p "$dir" && chmod 700 "$dir"
systemctl stop k3s || exit 1
( umask 077; tar -czf "$dir/.$snap.part" -C {SERVER_DIR} --exclude=db/snapshots --exclude='db/etcd-old-*' \\
    --exclude=db/reset-flag db token ) && mv "$dir/.$snap.part" "$dir/$snap"; copied=$?
rm -f "$dir/.$snap.part"
systemctl start --no-block k3s
end=$(($(date +%s) + {wait}))
until systemctl is-active --quiet k3s; do
  [ "$(date +%s)" -ge "$end" ] && {{ echo "k3s is not active {wait} s after the copy" >&2; exit 1; }}; sleep 0.5
done
[ $copied -eq 0 ] || exit 1
"""


def _describe(directory: str) -> str:
    """name, path, size and sha256 of $snap in `directory` (k3s adds .zip when it compresses)."""
    return f"""f={shlex.quote(directory)}/$snap; [ -f "$f" ] || f="$f.zip"
[ -f "$f" ] || {{ echo "snapshot $snap not found in {directory}" >&2; exit 1; }}
echo "name=${{f##*/}}"; echo "path=$f"; echo "size=$(stat -c %s "$f")"
echo "sha256=$(sha256sum "$f" | cut -d ' ' -f 1)"
"""


def download(session: HostSession, info: SnapshotInfo) -> bytes:
    """The snapshot's bytes (read as root, base64 over the session), checked against its sha256."""
    out = session.check(f"base64 {shlex.quote(info.path)}\n", f"reading {info.path}", reveal=True)
    data = base64.b64decode("".join(out.split()))
    if hashlib.sha256(data).hexdigest() != info.sha256 or len(data) != info.size:
        raise RemoteError(f"{info.path}: the copy does not match its sha256 {info.sha256} ({len(data)} of "
                          f"{info.size} bytes)")
    return data


def delete(session: HostSession, info: SnapshotInfo) -> None:
    """Remove a snapshot from its server (through k3s for etcd, so its ETCDSnapshotFile goes too)."""
    path = shlex.quote(info.path)
    script = (f"k3s etcd-snapshot delete {shlex.quote(Path(info.path).name)} >/dev/null 2>&1 || rm -f {path}\n"
              if info.datastore == "etcd" else f"rm -f {path}\n")
    session.check(script, f"deleting the snapshot {info.path}")
