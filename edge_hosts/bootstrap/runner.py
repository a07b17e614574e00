"""Bootstrap orchestration: prepare all hosts in parallel, first server, servers one at a time, agents in
parallel, every node Ready, MetalLB, kubeconfig. Hosts whose nodes run another k3s version take their turn in an
upgrade (edge_hosts/operations/upgrade.py) instead."""
from __future__ import annotations

import time
from pathlib import Path

from common import k3s

from edge_hosts.inventory import k3s_config
from edge_hosts.artifacts.downloads import ArtifactSource
from edge_hosts.engine.fanout import Engine
from edge_hosts.inventory.model import Inventory
from edge_hosts.engine.results import HostResult
from edge_hosts.engine.progress import Progress
from edge_hosts.access.state import TokenStore, ca_hash, password
from edge_hosts.facts import cluster
from edge_hosts.steps import nodes as node_steps
from edge_hosts.steps import fleet, host as steps, service
from edge_hosts.preflight import checks as preflight
from edge_hosts.engine.context import HostContext
from edge_hosts.steps.metallb import ensure_metallb, kit_pool
from edge_hosts.operations.upgrade import DEFAULT_DRAIN_TIMEOUT_S, Upgrade, plan_upgrade
from edge_hosts.steps.kubeconfig import write_kubeconfig


class Bootstrap:
    """One bootstrap run over the selected hosts of a site."""

    def __init__(self, inventory: Inventory, selected: list[str], parallel: int, progress: Progress,
                 kubeconfig: Path | None, batch: int = 1, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_S):
        self.inventory, self.selected, self.kubeconfig = inventory, selected, kubeconfig
        self.batch, self.drain_timeout = batch, drain_timeout
        self.wait_s = inventory.k3s.join_timeout
        self.first = inventory.first_server.name
        self.store = TokenStore(inventory.site)
        names = selected if self.first in selected else [self.first, *selected]
        self.engine = Engine(inventory, names, parallel, progress, ArtifactSource(inventory))
        self.engine.contexts[self.first].reads_cluster = True
        self.tokens = k3s_config.Tokens(*self.store.passwords())
        self.engine.add_secrets(self.tokens.values())
        self.snapshot: cluster.Snapshot | None = None
        self.nodes: dict[str, cluster.NodeState] = {}  # the running cluster's, before anything changed
        self.upgrade: Upgrade | None = None

    def run(self) -> list[HostResult]:
        with self.engine:
            self._prepare_all()
            first = self.engine.contexts[self.first]
            if self.first in self.selected:
                self._first_server(first)
            else:
                self.engine.step(first, "tokens", self._read_tokens)
            self._joiners(first)
            self.engine.step(first, "nodes-ready", self._all_ready)
            if self.first in self.selected:
                self.engine.step(first, "metallb", self._metallb)
                self.engine.step(first, "fleet", fleet.ensure_fleet)
                self.engine.step(first, "kubeconfig", self._kubeconfig)
            return self.engine.results(self.selected)

    # -- phases -----------------------------------------------------------------------------
    def _prepare_all(self) -> None:
        contexts = list(self.engine.contexts.values())
        self.engine.each(contexts, self.engine.connect_and_probe)
        self._check_unique_hostnames([c for c in contexts if c.facts is not None])
        chosen = [self.engine.contexts[n] for n in self.selected]
        first = self.engine.contexts[self.first]
        if first.facts is not None and first.facts.yes("active"):
            if not self.engine.step(first, "nodes", self._read_nodes):
                for ctx in chosen:  # without the nodes' versions no host may get another binary
                    self.engine.fail(ctx, first.error)
            plan = plan_upgrade(self.inventory, self.selected, self.nodes, self.batch)  # refused: nothing changed
            if plan is not None:
                self.upgrade = Upgrade(self.engine, plan, first, self.wait_s, self.drain_timeout)
                self.upgrade.snapshot()
        preflight.hold_site(self.engine, chosen, steps.preflight)
        self.engine.each(chosen, self._prepare_host)

    def _read_nodes(self, first: HostContext) -> bool:
        self.nodes = first.reading.snapshot.nodes if first.reading else cluster.nodes(first.session)
        return False

    def _upgrading(self, ctx: HostContext) -> bool:
        return self.upgrade is not None and self.upgrade.includes(ctx.host.name)

    def _prepare_host(self, ctx: HostContext) -> None:
        self.engine.step(ctx, "preflight", steps.preflight)
        self.engine.step(ctx, "os-prep", steps.os_prep)
        self.engine.step(ctx, "registries", steps.registries)
        if not self._upgrading(ctx):  # an upgrade brings the artifacts in the host's turn
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
        if self._upgrading(ctx):
            self.upgrade.server(ctx, self._seed)
        else:
            self._seed(ctx)

    def _seed(self, ctx: HostContext) -> None:
        self.engine.step(ctx, "new-cluster", self._cluster_gone)
        self.engine.step(ctx, "config", steps.config, self.tokens)
        self.engine.step(ctx, "install", steps.install)
        if ctx.started:
            self.engine.step(ctx, "api-ready", self._api_ready)
        self.engine.step(ctx, "tokens", self._read_tokens)
        if ctx.changed:  # an unchanged first server is checked with every other node at the end
            self.engine.step(ctx, "node-ready", self._wait_ready)

    def _joiners(self, first: HostContext) -> None:
        joiners = [self.engine.contexts[n] for n in self.selected if n != self.first]
        for ctx in joiners:
            if first.failed or self.tokens.server_full is None:
                self.engine.fail(ctx, f"join: waiting for first server {self.first}, which failed")
        for ctx in [c for c in joiners if c.host.role == "server"]:
            if self._upgrading(ctx):
                self.upgrade.server(ctx, self._join_server)
            else:
                self._join_server(ctx)
        self.engine.each([c for c in joiners if c.host.role == "agent" and not self._upgrading(c)], self._join)
        if self.upgrade is not None:
            self.upgrade.agents(self.engine.contexts, self._join)

    def _join_server(self, ctx: HostContext) -> None:
        self._join(ctx)
        if ctx.started:
            self.engine.step(ctx, "node-ready", self._wait_ready)

    def _join(self, ctx: HostContext) -> None:
        self.engine.step(ctx, "readmit", self._readmit)
        self.engine.step(ctx, "config", steps.config, self.tokens)
        self.engine.step(ctx, "install", steps.install)
        if ctx.started:
            self.engine.step(ctx, "unit-ready", self._unit_ready)

    # -- steps ------------------------------------------------------------------------------
    def _cluster_gone(self, ctx: HostContext) -> bool:
        """True (a logged step) when the cluster behind the site's tokens is gone: every server is fresh, or the
        first server runs a cluster with another CA. The site keeps its passwords; the first server seeds a new
        cluster with them (short forms pin no CA) and the new CA is learned from its tokens."""
        known = self.store.cluster_ca()
        if known is None or ctx.facts["ca_hash"] == known:
            return False
        if ctx.facts["ca_hash"]:
            return True
        holders = [c.host.name for c in self.engine.contexts.values()
                   if c is not ctx and c.host.role == "server" and c.facts is not None and c.facts["ca_hash"]]
        if holders:
            raise steps.StepError(f"{ctx.host.name} has no cluster data but {', '.join(holders)} still hold the "
                                  f"cluster: restore {ctx.host.name} from an etcd snapshot, or reset the site")
        others = [h.name for h in self.inventory.servers if h.name not in self.engine.contexts]
        if others:
            raise steps.StepError(f"{ctx.host.name} has no cluster data; include {', '.join(others)} in the run "
                                  f"to check they hold none either")
        return True

    def _unit_ready(self, ctx: HostContext) -> bool:
        """The (re)started unit becomes active within k3s.joinTimeout, else its log says why. A joiner refused for
        its node password (re-imaged after it had tried to join) is re-admitted once and waited for again."""
        what = f"{k3s.unit(ctx.host.role)} is not ready"
        if service.wait_active(ctx, self.wait_s):
            return False
        message = service.not_ready_message(ctx, self.wait_s, what)
        if ctx.host.name != self.first and "node password rejected" in message and "readmit" not in ctx.changed:
            node_steps.remove_stale_node(self.engine.contexts[self.first].session, ctx.host.name)
            ctx.changed.append("readmit")
            service.start(ctx, restart=True)
            if service.wait_active(ctx, self.wait_s):
                return False
            message = service.not_ready_message(ctx, self.wait_s, what)
        raise steps.StepError(message)

    def _api_ready(self, ctx: HostContext) -> bool:
        self._unit_ready(ctx)
        if not cluster.wait_readyz(ctx.session, self.wait_s):
            raise steps.StepError(service.not_ready_message(ctx, self.wait_s, "the API server is not ready"))
        return False

    def _read_tokens(self, ctx: HostContext) -> bool:
        """The full tokens from the first server, once they carry the site's passwords (a restarted server
        rewrites them); the cluster's CA hash is learned from them."""
        if not ctx.facts.yes("active"):
            raise steps.StepError(f"k3s is not running on the first server {ctx.host.name}: bootstrap it first")
        probed = ctx.reading.tokens if ctx.reading and not ctx.started else None
        server_full, agent_full = probed if probed and self._site_tokens(*probed) else self._wait_tokens(ctx)
        self.tokens = k3s_config.Tokens(self.tokens.server_password, self.tokens.agent_password, server_full, agent_full)
        self.engine.add_secrets(self.tokens.values())
        self.store.learn_ca(ca_hash(server_full))
        return False

    def _site_tokens(self, server_full: str, agent_full: str) -> bool:
        return (password(server_full), password(agent_full)) == (self.tokens.server_password,
                                                                  self.tokens.agent_password)

    def _wait_tokens(self, ctx: HostContext) -> tuple[str, str]:
        deadline = time.monotonic() + self.wait_s
        while True:
            server_full, agent_full = cluster.read_tokens(ctx.session, self.wait_s)
            if self._site_tokens(server_full, agent_full):
                return server_full, agent_full
            if time.monotonic() > deadline:
                raise steps.StepError(f"the cluster on {ctx.host.name} runs with other tokens than the site's "
                                      f"(made outside the kit?); reset the site or restore its tokens")
            time.sleep(1)

    def _readmit(self, ctx: HostContext) -> bool:
        """A fresh host (no node password yet) whose name the cluster still knows would be refused ("node password
        rejected"): the stale node and its password secret are removed first (a logged step)."""
        if ctx.facts.yes("node_password"):
            return False
        return node_steps.remove_stale_node(self.engine.contexts[self.first].session, ctx.host.name)

    def _wait_ready(self, ctx: HostContext) -> bool:
        self._unit_ready(ctx)
        first = self.engine.contexts[self.first]
        seen = cluster.wait_nodes_ready(first.session, [ctx.host.name], self.wait_s)
        if not (ctx.host.name in seen and seen[ctx.host.name].ready):
            raise steps.StepError(service.not_ready_message(ctx, self.wait_s,
                                                            cluster.not_ready_reason(ctx.host.name, seen)))
        return False

    def _all_ready(self, first: HostContext) -> bool:
        pending = [n for n in self.selected if not self.engine.contexts[n].failed]
        self.snapshot = self._probed_snapshot(first) or cluster.snapshot(first.session)
        seen = self.snapshot.nodes
        if not all(name in seen and seen[name].ready for name in pending):
            seen = cluster.wait_nodes_ready(first.session, pending, self.wait_s)
        late = [self.engine.contexts[n] for n in pending if not (n in seen and seen[n].ready)]
        self.engine.each(late, lambda ctx: self.engine.step(ctx, "node-ready", self._explain, seen))
        return False

    def _probed_snapshot(self, first: HostContext) -> cluster.Snapshot | None:
        """The snapshot the first server's probe took, while it still holds: no host changed or failed since."""
        if first.reading is None or any(c.changed or c.started or c.failed for c in self.engine.contexts.values()):
            return None
        return first.reading.snapshot

    def _explain(self, ctx: HostContext, seen: dict) -> bool:
        raise steps.StepError(service.not_ready_message(ctx, self.wait_s,
                                                        cluster.not_ready_reason(ctx.host.name, seen)))

    def _metallb(self, first: HostContext) -> bool:
        return ensure_metallb(first.session, self.inventory, first.source, kit_pool(self.snapshot.pools))

    def _kubeconfig(self, first: HostContext) -> bool:
        if self.kubeconfig is None:
            return False
        return write_kubeconfig(first, self.inventory, self.kubeconfig, self.snapshot.kubeconfig)
