"""edge.backup: a fresh snapshot of the site's datastore copied to the operator's machine (0600, sha256-checked, the
last N kept) with what a restore needs beside it: a manifest holding the site's server token password (the
snapshot's confidential data is encrypted with it: docs.k3s.io/datastore/backup-restore), its sha256 and datastore."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from edge_hosts.operations import snapshots
from edge_hosts.engine.fanout import Engine, connect
from edge_hosts.inventory.model import Inventory
from edge_hosts.engine.results import HostResult
from edge_hosts.operations.snapshots import SnapshotInfo
from edge_hosts.access.ssh import sha256_file
from edge_hosts.access.state import TokenStore, password, site_dir
from edge_hosts.facts import cluster
from edge_hosts.engine.context import HostContext
from edge_hosts.engine.context import StepError

NAME = "kit-backup"  # on-site name prefix: kit-backup-<node>-<unix time>
MANIFEST = ".json"   # <snapshot file>.json beside each snapshot


class BackupError(Exception):
    """A backup file or its manifest is not usable; the message names the file."""


def backups_dir(inventory: Inventory) -> Path:
    """The site's backups: <backups.dir>/<site>, else the kit's state directory of the site."""
    base = inventory.backups.dir
    return base / inventory.site if base else site_dir(inventory.site) / "backups"


def write_private_bytes(path: Path, data: bytes) -> None:
    """A file created 0600 (never readable by others, not even for a moment) in a 0700 directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def manifest_of(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name + MANIFEST)


def read_manifest(snapshot: Path) -> dict:
    """The manifest beside a backup, its sha256 checked against the file; BackupError when either is unusable."""
    path = manifest_of(snapshot)
    if not snapshot.is_file():
        raise BackupError(f"{snapshot}: no such backup file")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BackupError(f"{path}: the backup's manifest cannot be read ({err.__class__.__name__}); "
                          f"it holds the server token a restore needs") from None
    missing = [key for key in ("sha256", "datastore", "serverToken", "site") if key not in manifest]
    if missing:
        raise BackupError(f"{path}: missing {', '.join(missing)}")
    if sha256_file(snapshot) != manifest["sha256"]:
        raise BackupError(f"{snapshot}: sha256 does not match its manifest ({manifest['sha256']}): damaged copy")
    return manifest


def _keep_last(directory: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` backups (by the time in their manifests); the removed files."""
    found = []
    for manifest in directory.glob(f"*{MANIFEST}"):
        try:
            found.append((json.loads(manifest.read_text()).get("created", 0), manifest))
        except (OSError, ValueError):
            continue
    removed = []
    for _, manifest in sorted(found)[:max(0, len(found) - keep)]:
        snapshot = manifest.with_name(manifest.name.removesuffix(MANIFEST))
        for path in (snapshot, manifest):
            path.unlink(missing_ok=True)
        removed.append(snapshot)
    return removed


class Backup:
    """One edge.backup run: snapshot on the first server, copy, manifest, retention here and on the site."""

    def __init__(self, engine: Engine, inventory: Inventory):
        self.engine, self.inventory = engine, inventory
        self.first = engine.contexts[inventory.first_server.name]
        self.server_password, agent_password = TokenStore(inventory.site).passwords()
        engine.add_secrets({self.server_password, agent_password})
        self.info: SnapshotInfo | None = None
        self.saved: Path | None = None
        self.removed: list[str] = []

    def run(self) -> list[HostResult]:
        ctx = self.first
        self.engine.step(ctx, "connect", connect)
        self.engine.step(ctx, "snapshot", self._snapshot)
        self.engine.step(ctx, "copy", self._copy)
        self.engine.step(ctx, "retention", self._retention)
        return self.engine.results([ctx.host.name])

    def _snapshot(self, ctx: HostContext) -> bool:
        self.info = snapshots.save(ctx.session, self.inventory, ctx.host, NAME)
        return True

    def _copy(self, ctx: HostContext) -> bool:
        """The snapshot and its manifest, with the server token the cluster runs with (the site's, checked)."""
        running = password(cluster.read_tokens(ctx.session, self.inventory.k3s.join_timeout)[0])
        if running != self.server_password:
            raise StepError(f"the cluster on {ctx.host.name} runs with another server token than the site's kit "
                            f"state ({TokenStore(self.inventory.site).dir}): its backups could not be restored")
        data = snapshots.download(ctx.session, self.info)
        self.saved = backups_dir(self.inventory) / self.info.name
        manifest = {"site": self.inventory.site, "snapshot": self.info.name, "sha256": self.info.sha256,
                    "size": self.info.size, "datastore": self.info.datastore, "created": time.time(),
                    "k3sVersion": self.inventory.k3s.version, "server": ctx.host.name,
                    "serverToken": self.server_password}
        write_private_bytes(self.saved, data)
        write_private_bytes(manifest_of(self.saved), json.dumps(manifest, indent=2).encode())
        return True

    def _retention(self, ctx: HostContext) -> bool:
        """The last backups.keep here; on the site the kit's own snapshots beyond that many go too."""
        keep = self.inventory.backups.keep
        self.removed = [str(p) for p in _keep_last(backups_dir(self.inventory), keep)]
        for old in self._site_snapshots(ctx)[:-keep]:
            snapshots.delete(ctx.session, old)
            self.removed.append(f"{ctx.host.name}:{old.path}")
        return bool(self.removed)

    def report(self) -> dict:
        """What the run saved and removed (for the table's footer and --json)."""
        saved = None if self.saved is None else {"file": str(self.saved), "manifest": str(manifest_of(self.saved)),
                                                 "sha256": self.info.sha256, "size": self.info.size,
                                                 "datastore": self.info.datastore}
        return {"saved": saved, "removed": self.removed}

    def _site_snapshots(self, ctx: HostContext) -> list[SnapshotInfo]:
        """The kit's snapshots on the first server, oldest first (their names end in the unix time)."""
        directory = snapshots.snapshot_dir(self.inventory)
        out = ctx.session.check(f"ls -1 {directory} 2>/dev/null | grep '^{NAME}-' || true\n",
                                "listing the kit's snapshots")
        names = sorted(out.split(), key=lambda n: n.split("-")[-1].split(".")[0])
        return [SnapshotInfo(n, f"{directory}/{n}", 0, "", self.info.datastore) for n in names]
