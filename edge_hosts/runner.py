"""Bootstrap orchestration: prepare all hosts in parallel, first server, servers one at a time, agents in
parallel, every node Ready, MetalLB, kubeconfig."""
from __future__ import annotations

from pathlib import Path

from edge_hosts import k3s
from edge_hosts.artifacts import ArtifactSource
from edge_hosts.engine import Engine
from edge_hosts.inventory import Inventory
from edge_hosts.kubeconfig import merge_into, site_kubeconfig
from edge_hosts.report import HostResult, Progress
from edge_hosts.state import TokenStore
from edge_hosts.steps import cluster, host as steps
from edge_hosts.steps.context import HostContext
from edge_hosts.steps.metallb import ensure_metallb, kit_pool


class Bootstrap:
    """One bootstrap run over the selected hosts of a site."""

    def __init__(self, inventory: Inventory, selected: list[str], parallel: int, progress: Progress,
                 kubeconfig: Path | None, wait_s: float = 180):
        self.inventory, self.selected, self.kubeconfig, self.wait_s = inventory, selected, kubeconfig, wait_s
        self.first = inventory.first_server.name
        self.tokens = TokenStore(inventory.site)
        names = selected if self.first in selected else [self.first, *selected]
        self.engine = Engine(inventory, names, parallel, progress, ArtifactSource(inventory))
        self.token: str | None = self.tokens.read()
        self.snapshot: cluster.Snapshot | None = None

    def run(self) -> list[HostResult]:
        with self.engine:
            self._prepare_all()
            first = self.engine.contexts[self.first]
            if self.first in self.selected:
                self._first_server(first)
            elif self.token is None:
                self.engine.step(first, "token", self._read_token)
            self._joiners(first)
            if self.first in self.selected:
                self.engine.step(first, "nodes-ready", self._all_ready)
                self.engine.step(first, "metallb", self._metallb)
                self.engine.step(first, "kubeconfig", self._kubeconfig)
            return self.engine.results(self.selected)

    # -- phases -----------------------------------------------------------------------------
    def _prepare_all(self) -> None:
        contexts = list(self.engine.contexts.values())
        self.engine.each(contexts, self.engine.connect_and_probe)
        self._check_unique_hostnames([c for c in contexts if c.facts is not None])
        chosen = [self.engine.contexts[n] for n in self.selected]
        self.engine.each(chosen, self._prepare_host)

    def _prepare_host(self, ctx: HostContext) -> None:
        self.engine.step(ctx, "preflight", steps.preflight)
        self.engine.step(ctx, "os-prep", steps.os_prep)
        self.engine.step(ctx, "artifacts", steps.artifacts)

    def _check_unique_hostnames(self, contexts: list[HostContext]) -> None:
        seen: dict[str, list[str]] = {}
        for ctx in contexts:
            seen.setdefault(ctx.facts["hostname"], []).append(ctx.host.name)
        for ctx in contexts:
            others = [n for n in seen[ctx.facts["hostname"]] if n != ctx.host.name]
            if others:
                self.engine.fail(ctx, f"preflight: hostname '{ctx.facts['hostname']}' is also used by "
                                      f"{', '.join(others)}")

    def _first_server(self, ctx: HostContext) -> None:
        self.engine.step(ctx, "config", steps.config, self.token)
        self.engine.step(ctx, "install", steps.install)
        if ctx.changed:
            self.engine.step(ctx, "api-ready", lambda c: cluster.wait_readyz(c.session, self.wait_s))
        if self.token is None:
            self.engine.step(ctx, "token", self._read_token)
            # the same token k3s already uses: recorded in config.yaml for re-runs, no restart needed
            self.engine.step(ctx, "config", steps.config, self.token)
        if ctx.changed:  # an unchanged first server is checked with every other node at the end
            self.engine.step(ctx, "node-ready", self._wait_ready)

    def _joiners(self, first: HostContext) -> None:
        joiners = [self.engine.contexts[n] for n in self.selected if n != self.first]
        for ctx in joiners:
            if first.failed or self.token is None:
                self.engine.fail(ctx, f"join: waiting for first server {self.first}, which failed")
        for ctx in [c for c in joiners if c.host.role == "server"]:
            self._join(ctx)
            self.engine.step(ctx, "node-ready", self._wait_ready)
        self.engine.each([c for c in joiners if c.host.role == "agent"], self._join)

    def _join(self, ctx: HostContext) -> None:
        self.engine.step(ctx, "config", steps.config, self.token)
        self.engine.step(ctx, "install", steps.install)

    # -- steps run against the first server -----------------------------------------------
    def _read_token(self, ctx: HostContext) -> bool:
        self.token = cluster.read_token(ctx.session)
        self.tokens.write(self.token)
        return False

    def _wait_ready(self, ctx: HostContext) -> bool:
        first = self.engine.contexts[self.first]
        seen = cluster.wait_nodes_ready(first.session, [ctx.host.name], self.wait_s)
        if not (ctx.host.name in seen and seen[ctx.host.name].ready):
            steps.ensure_active(ctx)
            raise steps.StepError(cluster.not_ready_reason(ctx.host.name, seen))
        return False

    def _all_ready(self, first: HostContext) -> bool:
        pending = [n for n in self.selected if not self.engine.contexts[n].failed]
        self.snapshot = cluster.snapshot(first.session)
        seen = self.snapshot.nodes
        if not all(name in seen and seen[name].ready for name in pending):
            seen = cluster.wait_nodes_ready(first.session, pending, self.wait_s)
        for name in pending:
            if not (name in seen and seen[name].ready):
                self.engine.fail(self.engine.contexts[name], f"node-ready: {cluster.not_ready_reason(name, seen)}")
        return False

    def _metallb(self, first: HostContext) -> bool:
        return ensure_metallb(first.session, self.inventory, first.source, kit_pool(self.snapshot.pools))

    def _kubeconfig(self, first: HostContext) -> bool:
        if self.kubeconfig is None:
            return False
        return write_kubeconfig(first, self.inventory, self.kubeconfig, self.snapshot.kubeconfig)


def write_kubeconfig(first: HostContext, inventory: Inventory, path: Path, k3s_yaml: str | None = None) -> bool:
    """Merge the first server's k3s.yaml (fetched unless given), renamed to the site, into path."""
    text = k3s_yaml or first.session.check(f"cat {k3s.KUBECONFIG}\n", f"reading {k3s.KUBECONFIG}")
    return merge_into(path, site_kubeconfig(text, inventory.site, k3s.server_url(inventory)))
