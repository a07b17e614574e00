"""`k3s etcd-snapshot save|ls|delete`, scheduled snapshots with retention, and `k3s server --cluster-reset`.

As docs.k3s.io describes them (github.com/k3s-io/docs docs/cli/etcd-snapshot.md): files in etcd-snapshot-dir
(default ${data-dir}/server/db/snapshots) named `<name>-<node>-<unix time>` (on-demand name `on-demand`, scheduled
`etcd-snapshot`, cron etcd-snapshot-schedule-cron default "0 */12 * * *" in system time, etcd-snapshot-retention
default 5 scheduled snapshots kept, etcd-disable-snapshots); a save on an sqlite server fails with "etcd datastore
disabled". A restore (--cluster-reset --cluster-reset-restore-path) needs the server token the snapshot was taken
with (it decrypts the bootstrap data), moves the current etcd data to db/etcd-old-<time>, backs up tls/ to
tls-<time>, checks the snapshot's checksum, resets membership, leaves db/reset-flag and exits 0 with the message k3s
prints (pkg/etcd/etcd.go); the next normal start removes the flag. The lab's snapshot is JSON, not an etcd db."""
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from k3sstub import bootstrap
from k3sstub.cluster import Cluster
from k3sstub.settings import (API_PORT, DB_DIR, ETCD_DIR, RESET_FLAG, SNAPSHOT_DIR, TLS_DIR, TOKEN_FILE, Fatal,
                              load_config, log, node_name)

FORMAT = "lab-etcd-snapshot/1"
RESET_DONE = ("Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. "
              "Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes")


class SnapshotError(Exception):
    pass


def snapshot_dir(config: dict) -> Path:
    return Path(str(config.get("dir") or config.get("etcd-snapshot-dir") or SNAPSHOT_DIR))


# --- files ---------------------------------------------------------------------------------
def _server_state() -> dict:
    """The datastore as the local server serves it (authenticated with the server token, like k3s's CLI)."""
    if not TOKEN_FILE.exists():
        raise SnapshotError(f"open {TOKEN_FILE}: no such file or directory")
    request = urllib.request.Request(f"https://127.0.0.1:{API_PORT}/v1-lab/datastore",
                                     headers={"Authorization": f"Bearer {TOKEN_FILE.read_text().strip()}"})
    try:
        with urllib.request.urlopen(request, context=ssl._create_unverified_context(), timeout=30) as reply:
            return json.loads(reply.read())["state"]
    except urllib.error.HTTPError as err:
        raise SnapshotError("see server log for details: " + json.loads(err.read() or b"{}").get("message", "")) \
            from None
    except OSError as err:
        raise SnapshotError(f"failed to connect to the server at 127.0.0.1:{API_PORT}: {err}") from None


def write(directory: Path, name: str, node: str, state: dict) -> Path:
    body = json.dumps(state, sort_keys=True)
    doc = {"format": FORMAT, "sha256": hashlib.sha256(body.encode()).hexdigest(), "state": state}
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{name}-{node}-{int(time.time())}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(doc))
    log(f"Snapshot {path.name} saved.")
    return path


def read(path: Path) -> dict:
    """The state a snapshot holds, its checksum verified."""
    try:
        doc = json.loads(path.read_text())
    except OSError as err:
        raise SnapshotError(f"snapshot restore failed: open {path}: {err.strerror.lower()}") from None
    except ValueError:
        doc = {}
    body = json.dumps(doc.get("state"), sort_keys=True)
    if doc.get("format") != FORMAT or hashlib.sha256(body.encode()).hexdigest() != doc.get("sha256"):
        raise SnapshotError(f"snapshot restore failed: {path}: snapshot file integrity check failed")
    return doc["state"]


def prune(directory: Path, name: str, node: str, keep: int) -> None:
    """Keep the newest `keep` snapshots named `name`-`node`-<time>, oldest removed first."""
    pattern = re.compile(rf"^{re.escape(name)}-{re.escape(node)}-(\d+)$")
    found = sorted((int(m[1]), p) for p in directory.glob("*") if (m := pattern.match(p.name)))
    for _, path in found[:max(0, len(found) - keep)]:
        log(f"Removing local snapshot {path}")
        path.unlink(missing_ok=True)


# --- `k3s etcd-snapshot` -------------------------------------------------------------------
def run(args: list[str]) -> int:
    words = [a for i, a in enumerate(args) if not a.startswith("-") and not (i and args[i - 1] in ("--name", "--dir"))]
    command, names = (words[0] if words else "save"), words[1:]
    config = load_config("etcd-snapshot", args)
    directory = snapshot_dir(config)
    try:
        if command == "save":
            write(directory, str(config.get("name") or "on-demand"), node_name(config), _server_state())
        elif command in ("ls", "list", "l"):
            _list(directory)
        elif command == "delete":
            for name in names:
                _delete(directory, name)
        else:
            raise SnapshotError(f"etcd-snapshot {command} is not emulated")
    except SnapshotError as err:
        raise Fatal(f"Error: {err}") from None
    return 0


def _list(directory: Path) -> None:
    rows = [(p.name, f"file://{p}", str(p.stat().st_size),
             time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(p.stat().st_mtime)))
            for p in sorted(directory.glob("*")) if p.is_file()]
    widths = [max(len(r[i]) for r in [("Name", "Location", "Size", "Created"), *rows]) for i in range(3)]
    for row in [("Name", "Location", "Size", "Created"), *rows]:
        print("  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)))


def _delete(directory: Path, name: str) -> None:
    path = directory / name
    if not path.is_file():
        raise SnapshotError(f"snapshot {name} not found in {directory}")
    path.unlink()
    log(f"Snapshot {name} deleted.")


# --- scheduled snapshots --------------------------------------------------------------------
def _field(spec: str, value: int, low: int) -> bool:
    for part in spec.split(","):
        head, _, step = part.partition("/")
        if head == "*":
            first, last = low, 10 ** 6
        elif "-" in head:
            first, last = (int(x) for x in head.split("-", 1))
        else:
            first = last = int(head)
        if first <= value <= last and (value - first) % int(step or 1) == 0:
            return True
    return False


def cron_matches(spec: str, moment: time.struct_time) -> bool:
    """minute hour day-of-month month day-of-week (0 or 7 Sunday), every field matched."""
    minute, hour, dom, month, dow = spec.split()
    weekday = (moment.tm_wday + 1) % 7
    return (_field(minute, moment.tm_min, 0) and _field(hour, moment.tm_hour, 0) and _field(dom, moment.tm_mday, 1)
            and _field(month, moment.tm_mon, 1) and (_field(dow, weekday, 0) or _field(dow, weekday or 7, 0)))


def start_schedule(config: dict, node: str) -> None:
    """Scheduled snapshots on an etcd server (none on sqlite, none with etcd-disable-snapshots)."""
    if not ETCD_DIR.is_dir() or config.get("etcd-disable-snapshots"):
        return
    spec = str(config.get("etcd-snapshot-schedule-cron") or "0 */12 * * *")
    name = str(config.get("etcd-snapshot-name") or "etcd-snapshot")
    keep = int(config.get("etcd-snapshot-retention") or 5)

    def loop():
        while True:
            time.sleep(60 - time.time() % 60 + 0.05)
            if cron_matches(spec, time.localtime()):
                try:
                    write(snapshot_dir(config), name, node, _server_state())
                    prune(snapshot_dir(config), name, node, keep)
                except (SnapshotError, OSError) as err:
                    log(f"Failed to take scheduled snapshot: {err}", "error")
    threading.Thread(target=loop, daemon=True, name="etcd-snapshot-schedule").start()


# --- `k3s server --cluster-reset [--cluster-reset-restore-path F]` -------------------------------
def cluster_reset(config: dict) -> int:
    from k3sstub.node import server_password

    if RESET_FLAG.exists():
        raise Fatal(f"Error: cluster-reset was already done: remove {RESET_FLAG} before another cluster reset, "
                    "or start k3s without --cluster-reset")
    _port_free()
    cluster, path = Cluster(), config.get("cluster-reset-restore-path")
    if path:
        try:
            saved = read(Path(str(path)))
            files = bootstrap.decrypt(saved["bootstrap"], server_password(config))
        except (SnapshotError, bootstrap.WrongToken) as err:
            raise Fatal(f"starting kubernetes: preparing server: {err}") from None
        _set_aside(ETCD_DIR, DB_DIR / f"etcd-old-{int(time.time())}")
        backup = TLS_DIR.parent / f"tls-{int(time.time())}"
        log(f"Cluster reset: backing up certificates directory to {backup}")
        if TLS_DIR.exists():
            shutil.copytree(TLS_DIR, backup, dirs_exist_ok=True)
        bootstrap.reconcile_files(files, cluster_reset=True)
        cluster.load(saved)
    ETCD_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    cluster.generation = secrets.token_hex(8)
    cluster.save()
    RESET_FLAG.touch()
    log(RESET_DONE)
    return 0


def _port_free() -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # a listener, not TIME_WAIT, is in the way
        try:
            probe.bind(("0.0.0.0", API_PORT))
        except OSError:
            raise Fatal(f"starting kubernetes: listen tcp 0.0.0.0:{API_PORT}: bind: address already in use "
                        "(stop k3s before a cluster reset)") from None


def _set_aside(source: Path, target: Path) -> None:
    if source.is_dir():
        source.rename(target)
