"""edge.restore: a backup from edge.backup put back onto the site, after every reason it cannot be is checked."""
from __future__ import annotations

import shlex
from pathlib import Path

from common import k3s

from edge_hosts.inventory import k3s_config
from edge_hosts.operations import snapshots
from edge_hosts.engine.fanout import Engine
from edge_hosts.inventory.model import Inventory
from edge_hosts.engine.results import HostResult
from edge_hosts.steps.kubeconfig import write_kubeconfig
from edge_hosts.access.state import TokenStore, ca_hash
from edge_hosts.facts import cluster
from edge_hosts.steps import nodes as node_steps
from edge_hosts.steps import host as host_steps, service
from edge_hosts.engine.context import HostContext
from edge_hosts.engine.context import StepError
from edge_hosts.operations.upgrade import minor
from edge_hosts.operations.backup import BackupError, manifest_of, read_manifest

# the files a server keeps in the datastore as its bootstrap data, below ${data-dir}/server (k3s pkg/daemons/config
# types.go ControlRuntimeBootstrap, paths from pkg/daemons/control/deps/deps.go CreateRuntimeCertFiles); at start
# k3s refuses a differing one newer on disk than the datastore's ("... newer than datastore and could cause a
# cluster outage. Remove the file(s) from disk and restart to be recreated from datastore.", pkg/cluster/bootstrap.go
# ReconcileBootstrapData) and writes a missing one from the datastore
BOOTSTRAP_FILES = tuple(f"tls/{ca}.{ext}" for ca in ("server-ca", "client-ca", "request-header-ca")
                        for ext in ("crt", "key")) + ("tls/service.key",) + tuple(
    f"tls/etcd/{ca}.{ext}" for ca in ("server-ca", "peer-ca") for ext in ("crt", "key")) + tuple(
    f"cred/{name}" for name in ("passwd", "ipsec.psk", "encryption-config.json", "encryption-state.json"))


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
    restored (etcd: `k3s server --cluster-reset --cluster-reset-restore-path`, which exits when done and alone
    replaces the CA files on disk with the snapshot's; sqlite: the copy of db/ and the token put back, the CA files
    set aside) and k3s started; the other servers' db directories and CA files that differ from the restored
    server's are set aside (a re-bootstrapped site holds a newer CA, which k3s would refuse) and they rejoin;
    agents restart. Joiners get config.yaml with the restored cluster's tokens (its CA may differ from the
    one they last joined); nodes the inventory does not name are deleted; the kubeconfig is refreshed."""

    def __init__(self, engine: Engine, inventory: Inventory, snapshot: Path, manifest: dict, kubeconfig: Path | None):
        self.engine, self.inventory, self.snapshot = engine, inventory, snapshot
        self.manifest, self.kubeconfig = manifest, kubeconfig
        self.store = TokenStore(inventory.site)
        self.tokens = k3s_config.Tokens(*self.store.passwords())
        self.engine.add_secrets(self.tokens.values())
        self.first = engine.contexts[inventory.first_server.name]
        self.wait_s = inventory.k3s.join_timeout
        self.remote = f"{snapshots.snapshot_dir(inventory)}/{manifest['snapshot']}"
        self.restored_files: str | None = None   # "<file>=<sha256> ..." of the restored first server

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
        if self.manifest["datastore"] == "sqlite":   # no --cluster-reset: the CA on disk may be a newer cluster's
            self.engine.step(self.first, "set-aside-ca", lambda c: set_aside_ca(c, ""))
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
        self.tokens = k3s_config.Tokens(self.tokens.server_password, self.tokens.agent_password, server_full, agent_full)
        self.engine.add_secrets(self.tokens.values())
        self.store.learn_ca(ca_hash(server_full))
        return False

    def _rejoin(self, ctx: HostContext) -> None:
        if self.first.failed:
            self.engine.fail(ctx, f"restore: waiting for the first server {self.first.host.name}, which failed")
        if ctx.host.role == "server":
            self.engine.step(ctx, "set-aside-db", self._set_aside_db)
            self.engine.step(ctx, "set-aside-ca", lambda c: set_aside_ca(c, self._restored_files()))
        self.engine.step(ctx, "config", host_steps.config, self.tokens)
        self.engine.step(ctx, "start", self._start_joiner)

    def _set_aside_db(self, ctx: HostContext) -> bool:
        """'Backup and delete ${datadir}/server/db on each peer etcd server' (k3s's cluster-reset message)."""
        ctx.session.check(f"""[ -d {snapshots.DB_DIR} ] || exit 0
mv {snapshots.DB_DIR} {snapshots.SERVER_DIR}/db-before-restore-$(date +%s)
""", "setting the old etcd data aside")
        return True

    def _restored_files(self) -> str:
        """The restored first server's bootstrap files and their sha256 (its disk holds the datastore's)."""
        if self.restored_files is None:
            self.restored_files = self.first.session.check(f"""cd {snapshots.SERVER_DIR} || exit 1
for f in {' '.join(BOOTSTRAP_FILES)}; do [ -f "$f" ] && echo "$f=$(sha256sum < "$f" | cut -c1-64)"; done; true
""", "reading the restored CA files' sha256").replace("\n", " ")
        return self.restored_files

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
            node_steps.remove_stale_node(ctx.session, name)
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


def set_aside_ca(ctx: HostContext, keep: str) -> bool:
    """Move the server's bootstrap files not in `keep` ("<file>=<sha256> ...") to server/ca-before-restore-<time>,
    for k3s to write them from the datastore at start. Any differing file goes, not only those k3s would refuse
    (newer by 3 s, judged against the datastore's times): the others k3s overwrites anyway, and no clock of two
    hosts is compared. True when any moved."""
    out = ctx.session.check(f"""cd {snapshots.SERVER_DIR} 2>/dev/null || exit 0
old=ca-before-restore-$(date +%s); keep={shlex.quote(f" {keep} ")}
for f in {' '.join(BOOTSTRAP_FILES)}; do
  [ -f "$f" ] || continue
  case "$keep" in *" $f=$(sha256sum < "$f" | cut -c1-64) "*) continue ;; esac
  mkdir -p "$old/${{f%/*}}" && chmod 700 "$old" && mv "$f" "$old/$f" || exit 1
  echo "moved=$f"
done
""", "setting the CA files aside")
    return "moved=" in out
