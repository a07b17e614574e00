"""Upgrading a running site to the pinned k3s version, in the order k3s documents: "When upgrading, upgrade server
nodes first one at a time, then any agent nodes" (docs.k3s.io/upgrades/manual; github.com/k3s-io/docs
docs/upgrades/manual.md), never skipping a minor ("Ensure that your plan does not skip intermediate minor versions",
the Kubernetes version skew policy, same page).

A run that finds nodes on another version: the path is checked first (bad input, nothing changed), a snapshot of
the datastore is taken on the first server, then each server in turn and the agents in batches get the new binary,
are restarted onto it and must report it as their kubelet version (Ready) before the next. Each agent is cordoned
and drained first (kubectl drain: evictions honour PodDisruptionBudgets, within --drain-timeout) and uncordoned
after. The first failure stops the upgrade: the hosts not reached keep their version and are named as such; a
re-run finds the nodes still on the old version and continues with them.

A failed node: a drain that failed changed nothing on the host, so it is uncordoned again (it serves on its old
version; kubectl leaves it cordoned) unless it was cordoned before. A node that failed after its drain (upload,
restart, version check) stays cordoned: nothing should be scheduled onto a node in a state nobody checked; the
system-upgrade-controller leaves such nodes cordoned the same way (docs.k3s.io/upgrades/automated, "Nodes with
cordon: true configured in their plan will stay cordoned following the failure"). The re-run drains it again
(nothing left to evict), upgrades it and uncordons it. An upgraded node is always uncordoned (the kit cannot tell
its own cordon from an operator's): keep a node out of the run with --hosts to leave it cordoned.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edge_hosts.operations import snapshots
from edge_hosts.engine.fanout import Engine
from edge_hosts.inventory.model import Inventory
from edge_hosts.access.ssh import RemoteError, TransportError
from edge_hosts.facts import cluster
from edge_hosts.steps import nodes as node_steps
from edge_hosts.steps import host as steps
from edge_hosts.engine.context import HostContext

DEFAULT_DRAIN_TIMEOUT_S = 300


class UpgradeRefused(Exception):
    """The pinned version cannot be reached from the running one (bad input: exit 2, nothing changed)."""


def minor(version: str) -> int:
    """v1.37.2+k3s1 -> 37."""
    return int(version.split(".")[1])


@dataclass(frozen=True)
class Turn:
    """One host's upgrade: its node's version before, and its batch (0: servers, one at a time)."""
    name: str
    old: str
    batch: int


@dataclass(frozen=True)
class UpgradePlan:
    version: str
    turns: list[Turn]

    def turn(self, name: str) -> Turn | None:
        return next((t for t in self.turns if t.name == name), None)

    def batches(self) -> list[list[Turn]]:
        numbers = sorted({t.batch for t in self.turns if t.batch})
        return [[t for t in self.turns if t.batch == n] for n in numbers]

    def describe(self, name: str) -> str:
        """edge.plan's line for a host: its place in the order and the versions."""
        turn = self.turn(name)
        servers = [t for t in self.turns if not t.batch]
        if not turn.batch:
            where = f"server {servers.index(turn) + 1} of {len(servers)}, one at a time"
        else:
            where = f"agent batch {turn.batch} of {len(self.batches())}, after the servers; cordon, drain"
        return f"upgrade: {turn.old} -> {self.version} ({where})"


def check_path(inventory: Inventory, running: dict[str, str]) -> None:
    """Refuse a pin more than one minor ahead of any node, naming the minors to pin in between, and a pin a minor
    behind one: a rollback is the older binary with the datastore restored from a snapshot taken before the
    upgrade (docs.k3s.io/upgrades/roll-back), not a rolling downgrade."""
    pinned = inventory.k3s.version
    ahead = {name: version for name, version in running.items() if minor(version) > minor(pinned)}
    if ahead:
        nodes = ", ".join(f"{name} ({version})" for name, version in sorted(ahead.items()))
        raise UpgradeRefused(f"{inventory.source}: k3s.version: {pinned} is a minor behind {nodes}: k3s is not "
                             f"downgraded node by node; roll back by restoring a snapshot taken before the upgrade "
                             f"(edge.restore, docs.k3s.io/upgrades/roll-back)")
    behind = {name: version for name, version in running.items() if minor(pinned) - minor(version) > 1}
    if not behind:
        return
    lowest = min(minor(v) for v in behind.values())
    major = pinned.lstrip("v").split(".")[0]
    steps_between = [f"v{major}.{m}" for m in range(lowest + 1, minor(pinned))]
    nodes = ", ".join(f"{name} ({version})" for name, version in sorted(behind.items()))
    raise UpgradeRefused(f"{inventory.source}: k3s.version: {pinned} skips minor versions for {nodes}: k3s upgrades "
                         f"one minor at a time (docs.k3s.io/upgrades/manual); pin the newest patch of "
                         f"{', then '.join(steps_between)} first (edge.bootstrap each), then {pinned}")


def plan_upgrade(inventory: Inventory, selected: list[str], nodes: dict[str, cluster.NodeState],
                 batch: int) -> UpgradePlan | None:
    """The selected hosts whose nodes run another version, servers first (the first server first, then the
    inventory's order), agents in batches of `batch`; None when there is nothing to upgrade."""
    check_path(inventory, {name: node.version for name, node in nodes.items() if node.version})
    pinned = inventory.k3s.version
    stale = [h for h in inventory.hosts if h.name in selected and h.name in nodes and nodes[h.name].version
             and nodes[h.name].version != pinned]
    servers = sorted((h for h in stale if h.role == "server"), key=lambda h: h != inventory.first_server)
    agents = [h for h in stale if h.role == "agent"]
    turns = [Turn(h.name, nodes[h.name].version, 0) for h in servers]
    turns += [Turn(h.name, nodes[h.name].version, 1 + i // batch) for i, h in enumerate(agents)]
    return UpgradePlan(pinned, turns) if turns else None


class Upgrade:
    """Runs an UpgradePlan inside a bootstrap: the runner hands each host's usual work (config, install, waits)
    to `server` or `agents`, which wrap it in the upgrade's order and checks."""

    def __init__(self, engine: Engine, plan: UpgradePlan, first: HostContext, wait_s: float, drain_timeout: float):
        self.engine, self.plan, self.first = engine, plan, first
        self.wait_s, self.drain_timeout = wait_s, drain_timeout
        self.reached: set[str] = set()  # hosts whose turn began
        self.cordoned_before = {t.name: False for t in plan.turns}

    def includes(self, name: str) -> bool:
        return self.plan.turn(name) is not None

    def snapshot(self) -> None:
        """A datastore snapshot on the first server before any host changes; without one nothing is upgraded."""
        if not self.engine.step(self.first, "snapshot", self._snapshot):
            self._stop([self.first], "no snapshot")

    def server(self, ctx: HostContext, work: Callable[[HostContext], None]) -> None:
        """One server's turn; a failure stops every host after it."""
        self._turn(ctx, work)
        if ctx.failed:
            self._stop([ctx], "a server")

    def agents(self, contexts: dict[str, HostContext], work: Callable[[HostContext], None]) -> None:
        """The agents batch by batch (a batch's agents at the same time); a batch with a failure is the last."""
        for number, batch in enumerate(self.plan.batches(), 1):
            members = [contexts[t.name] for t in batch]
            self.engine.each(members, lambda ctx: self._agent(ctx, work))
            failed = [ctx for ctx in members if ctx.failed]
            if failed:
                self._stop(failed, f"agent batch {number} of {len(self.plan.batches())}")
                return

    # -- one host -----------------------------------------------------------------------------
    def _agent(self, ctx: HostContext, work: Callable[[HostContext], None]) -> None:
        self.reached.add(ctx.host.name)
        if not self.engine.step(ctx, "drain", self._drain):
            ctx.error += f"; {self._after_failed_drain(ctx)}"
            return
        self._turn(ctx, work)
        if ctx.failed:
            ctx.error += f"; {ctx.host.name} is left cordoned (re-run edge.bootstrap to continue)"
            return
        self.engine.step(ctx, "uncordon", self._uncordon)

    def _after_failed_drain(self, ctx: HostContext) -> str:
        """Nothing changed on the host: it serves again on its old version (kubectl left it cordoned), unless it
        was cordoned before the run."""
        name, old = ctx.host.name, self.plan.turn(ctx.host.name).old
        if self.cordoned_before[name]:
            return f"{name} was cordoned before the drain and stays so, on {old}"
        try:
            node_steps.uncordon(self.first.session, name)
        except (RemoteError, TransportError) as err:
            return f"{name} is still on {old} but stays cordoned: {err}"
        return f"{name} is uncordoned again, still on {old}"

    def _turn(self, ctx: HostContext, work: Callable[[HostContext], None]) -> None:
        """The new binary, the host's usual steps (which restart k3s onto it), then the node's new version."""
        self.reached.add(ctx.host.name)
        self.engine.step(ctx, "artifacts", _artifacts)
        work(ctx)
        self.engine.step(ctx, "upgrade", self._reports_new_version)

    def _stop(self, at: list[HostContext], where: str) -> None:
        """Every host whose turn has not begun is named as left on its version."""
        names = ", ".join(ctx.host.name for ctx in at)
        for turn in self.plan.turns:
            ctx = self.engine.contexts.get(turn.name)
            if ctx is not None and turn.name not in self.reached:
                self.engine.fail(ctx, f"upgrade: not started, it stopped at {names} ({where}); still on "
                                      f"{turn.old}; re-run edge.bootstrap to continue")

    # -- steps --------------------------------------------------------------------------------
    def _snapshot(self, first: HostContext) -> bool:
        name = f"pre-upgrade-{self.plan.version.replace('+', '-')}"
        snapshots.save(first.session, first.inventory, first.host, name)
        return True

    def _drain(self, ctx: HostContext) -> bool:
        name = ctx.host.name
        self.cordoned_before[name] = cluster.nodes(self.first.session)[name].unschedulable
        node_steps.drain(self.first.session, name, self.drain_timeout)
        return True

    def _uncordon(self, ctx: HostContext) -> bool:
        node_steps.uncordon(self.first.session, ctx.host.name)
        return True

    def _reports_new_version(self, ctx: HostContext) -> bool:
        """The node, Ready, reports the pinned version as its kubelet's (the binary that runs, not the one on disk)."""
        node = cluster.wait_node_version(self.first.session, ctx.host.name, self.plan.version, self.wait_s)
        if node is None or not node.ready or node.version != self.plan.version:
            seen = "no node" if node is None else f"{'Ready' if node.ready else 'not Ready'}, {node.version}"
            raise steps.StepError(f"node {ctx.host.name} does not report {self.plan.version} within "
                                  f"{self.wait_s:.0f} s of its restart ({seen})")
        return True


def _artifacts(ctx: HostContext) -> bool:
    """The host's artifacts; the binary counts as replaced either way, so the install step restarts k3s onto it
    (an earlier run may have put it in place and stopped before the restart)."""
    steps.artifacts(ctx)
    ctx.replaced.add("bin")
    return True
