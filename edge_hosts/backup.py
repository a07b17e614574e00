"""edge.backup: a fresh snapshot of the site's datastore copied to the operator's machine (0600, sha256-checked, the
last N kept) with what a restore needs beside it: a manifest holding the site's server token password (the
snapshot's confidential data is encrypted with it: docs.k3s.io/datastore/backup-restore), its sha256 and datastore."""
from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

from edge_hosts import k3s, snapshots
from edge_hosts.engine import Engine, connect
from edge_hosts.inventory import Inventory
from edge_hosts.report import HostResult
from edge_hosts.runner import write_kubeconfig
from edge_hosts.snapshots import SnapshotInfo
from edge_hosts.ssh import sha256_file
from edge_hosts.state import TokenStore, ca_hash, password, site_dir
from edge_hosts.steps import cluster, host as host_steps, service
from edge_hosts.steps.context import HostContext
from edge_hosts.steps.host import StepError
from edge_hosts.upgrade import minor

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


# --- edge.restore ----------------------------------------------------------------------------
def restore_problems(inventory: Inventory, snapshot: Path) -> tuple[dict | None, list[str]]:
    """(the backup's manifest, every reason it cannot be restored onto this site): checked before anything runs."""
    try:
        manifest = read_manifest(snapshot)
    except BackupError as err:
        return None, [str(err)]
    problems = []
    source = manifest_of(snapshot)
    if manifest["site"] != inventory.site:
        problems.append(f"{source}: site: the backup is of site {manifest['site']}, not {inventory.site}")
    wanted = site_datastore(inventory)
    if manifest["datastore"] != wanted:
        problems.append(f"{source}: datastore: the backup holds an {manifest['datastore']} datastore; the "
                        f"{len(inventory.servers)} server(s) of {inventory.source} run {wanted}")
    taken = manifest.get("k3sVersion", inventory.k3s.version)
    if minor(taken) > minor(inventory.k3s.version):   # "the same K3s version ... a higher minor version is also
        # acceptable" for the restoring server (docs/cli/etcd-snapshot.md), never an older one
        problems.append(f"{source}: k3sVersion: the backup was taken with k3s {taken}; the site pins "
                        f"{inventory.k3s.version}, an older minor, which cannot restore it: pin {taken} or newer first")
    store = TokenStore(inventory.site)
    if not store.exists() or store.passwords()[0] != manifest["serverToken"]:
        problems.append(f"{source}: serverToken: the site's kit state ({store.dir}) holds another server token than "
                        f"the backup (the restored cluster is encrypted with the backup's): restore the site's "
                        f"state directory first")
    return manifest, problems


def site_datastore(inventory: Inventory) -> str:
    """What the kit's config gives the site: embedded etcd with several servers (cluster-init), else sqlite."""
    return "etcd" if len(inventory.servers) > 1 else "sqlite"


class Restore:
    """edge.restore, as docs.k3s.io/cli/etcd-snapshot ("Restoring Snapshots", multiple servers) and
    docs/datastore/backup-restore.md describe it: k3s stopped on every server; on the first the snapshot is
    restored (etcd: `k3s server --cluster-reset --cluster-reset-restore-path`, which exits when done; sqlite: the
    copy of db/ and the token put back) and k3s started; the other servers' db directories are set aside and they
    rejoin; agents restart. Joiners get config.yaml with the restored cluster's tokens (its CA may differ from the
    one they last joined); nodes the inventory does not name are deleted; the kubeconfig is refreshed."""

    def __init__(self, engine: Engine, inventory: Inventory, snapshot: Path, manifest: dict, kubeconfig: Path | None):
        self.engine, self.inventory, self.snapshot = engine, inventory, snapshot
        self.manifest, self.kubeconfig = manifest, kubeconfig
        self.store = TokenStore(inventory.site)
        self.tokens = k3s.Tokens(*self.store.passwords())
        self.engine.add_secrets(self.tokens.values())
        self.first = engine.contexts[inventory.first_server.name]
        self.wait_s = inventory.k3s.join_timeout
        self.remote = f"{snapshots.snapshot_dir(inventory)}/{manifest['snapshot']}"

    def run(self) -> list[HostResult]:
        names = [h.name for h in self.inventory.hosts]
        contexts = [self.engine.contexts[n] for n in names]
        self.engine.each(contexts, self._ready_for_restore)
        failed = [c.host.name for c in contexts if c.failed]
        for ctx in contexts:   # all or nothing: a restore needs every host
            if not ctx.failed and failed:
                self.engine.fail(ctx, f"restore: not started, {', '.join(failed)} failed")
        self.engine.step(self.first, "upload", self._upload)
        servers = [self.engine.contexts[h.name] for h in self.inventory.servers]
        for ctx in reversed(servers):
            self.engine.step(ctx, "stop", self._stop)
        self.engine.step(self.first, "restore", self._restore)
        self.engine.step(self.first, "start", self._start_first)
        self.engine.step(self.first, "tokens", self._tokens)
        for ctx in servers[1:]:
            self._rejoin(ctx)
        self.engine.each([self.engine.contexts[h.name] for h in self.inventory.agents], self._rejoin)
        self.engine.step(self.first, "stale-nodes", self._stale_nodes)
        self.engine.step(self.first, "nodes-ready", self._nodes_ready)
        if self.kubeconfig is not None:
            self.engine.step(self.first, "kubeconfig", self._kubeconfig)
        return self.engine.results(names)

    def _ready_for_restore(self, ctx: HostContext) -> None:
        self.engine.connect_and_probe(ctx)
        if not ctx.failed and not ctx.facts.yes("unit_file"):
            self.engine.fail(ctx, f"restore: k3s is not installed on {ctx.host.name}: bootstrap the site first")
        if self.first.failed and ctx is not self.first:
            self.engine.fail(ctx, f"restore: waiting for the first server {self.first.host.name}, which failed")

    def _upload(self, ctx: HostContext) -> bool:
        """The backup onto the first server's snapshot directory, unless the same file is there."""
        digest = self.manifest["sha256"]
        have = ctx.session.run(f"sha256sum {shlex.quote(self.remote)} 2>/dev/null\n").out.split()[:1]
        if have == [digest]:
            return False
        ctx.session.upload(self.snapshot, self.remote, "0600", digest)
        return True

    def _stop(self, ctx: HostContext) -> bool:
        ctx.session.check(f"systemctl stop {k3s.unit('server')}\n", "stopping k3s")
        ctx.facts.values["active"] = "no"
        return True

    def _restore(self, ctx: HostContext) -> bool:
        path = shlex.quote(self.remote)
        if self.manifest["datastore"] == "etcd":
            out = ctx.session.check(f"""rm -f {snapshots.DB_DIR}/reset-flag
{k3s.BIN} server --cluster-reset --cluster-reset-restore-path={path} 2>&1
""", "k3s cluster-reset restore", timeout=max(600, self.wait_s))
            if "restart without --cluster-reset flag now" not in out:
                raise StepError(f"k3s cluster-reset ended without its completion message: {out.strip()[-300:]}")
            return True
        ctx.session.check(f"""set -e
old={snapshots.SERVER_DIR}/db-before-restore-$(date +%s); mkdir -p "$old"; chmod 700 "$old"
for p in {snapshots.DB_DIR}/* {snapshots.DB_DIR}/.[!.]* {k3s.TOKEN_FILE}; do
  case "$p" in {snapshots.DB_DIR}/snapshots) ;; *) [ -e "$p" ] && mv "$p" "$old/" ;; esac
done
tar -xzf {path} -C {snapshots.SERVER_DIR}
""", "putting the datastore copy back")
        return True

    def _start_first(self, ctx: HostContext) -> bool:
        service.start(ctx, restart=False)
        if not service.wait_active(ctx, self.wait_s) or not cluster.wait_readyz(ctx.session, self.wait_s):
            raise StepError(service.not_ready_message(ctx, self.wait_s, "the restored server is not ready"))
        return True

    def _tokens(self, ctx: HostContext) -> bool:
        """The restored cluster's full tokens (its CA is the snapshot's) for the joiners' config."""
        server_full, agent_full = cluster.read_tokens(ctx.session, self.wait_s)
        self.tokens = k3s.Tokens(self.tokens.server_password, self.tokens.agent_password, server_full, agent_full)
        self.engine.add_secrets(self.tokens.values())
        self.store.learn_ca(ca_hash(server_full))
        return False

    def _rejoin(self, ctx: HostContext) -> None:
        if self.first.failed:
            self.engine.fail(ctx, f"restore: waiting for the first server {self.first.host.name}, which failed")
        if ctx.host.role == "server":
            self.engine.step(ctx, "set-aside-db", self._set_aside_db)
        self.engine.step(ctx, "config", host_steps.config, self.tokens)
        self.engine.step(ctx, "start", self._start_joiner)

    def _set_aside_db(self, ctx: HostContext) -> bool:
        """'Backup and delete ${datadir}/server/db on each peer etcd server' (k3s's cluster-reset message)."""
        ctx.session.check(f"""[ -d {snapshots.DB_DIR} ] || exit 0
mv {snapshots.DB_DIR} {snapshots.SERVER_DIR}/db-before-restore-$(date +%s)
""", "setting the old etcd data aside")
        return True

    def _start_joiner(self, ctx: HostContext) -> bool:
        service.start(ctx, restart=ctx.host.role == "agent")
        if not service.wait_active(ctx, self.wait_s):
            raise StepError(service.not_ready_message(ctx, self.wait_s, f"{k3s.unit(ctx.host.role)} is not ready"))
        return True

    def _stale_nodes(self, ctx: HostContext) -> bool:
        """Nodes the snapshot holds that the inventory does not name (docs: delete them after a restore)."""
        known = {h.name for h in self.inventory.hosts}
        stale = [name for name in cluster.nodes(ctx.session) if name not in known]
        for name in stale:
            cluster.remove_stale_node(ctx.session, name)
        return bool(stale)

    def _nodes_ready(self, ctx: HostContext) -> bool:
        names = [c.host.name for c in self.engine.contexts.values() if not c.failed]
        seen = cluster.wait_nodes_ready(ctx.session, names, self.wait_s)
        late = [n for n in names if not (n in seen and seen[n].ready)]
        for name in late:
            self.engine.fail(self.engine.contexts[name], f"nodes-ready: {cluster.not_ready_reason(name, seen)}")
        return False

    def _kubeconfig(self, ctx: HostContext) -> bool:
        return write_kubeconfig(ctx, self.inventory, self.kubeconfig)
