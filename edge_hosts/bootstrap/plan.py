"""edge.plan: what a bootstrap would change on each host, found with the same one-probe-per-host checks, and the
upgrade path (hosts in order and batches, versions) when nodes run another k3s version."""
from __future__ import annotations

import hashlib

from common import k3s

from edge_hosts.inventory import k3s_config
from edge_hosts.artifacts import proxy
from edge_hosts.artifacts.downloads import ArtifactError, stale_artifacts, with_release_sha256
from edge_hosts.engine.fanout import Engine
from edge_hosts.inventory.registries import registries_file
from edge_hosts.engine.results import HostResult
from edge_hosts.access.ssh import RemoteError, TransportError
from edge_hosts.access.state import TokenStore
from edge_hosts.facts import cluster
from edge_hosts.engine.context import HostContext
from edge_hosts.preflight.checks import br_netfilter_script, preflight_problems
from edge_hosts.steps.metallb import current_pool, pool_matches
from edge_hosts.operations.upgrade import UpgradePlan, plan_upgrade


def planned_changes(ctx: HostContext, tokens: k3s_config.Tokens | None) -> list[str]:
    facts, host = ctx.facts, ctx.host
    changes = []
    if br_netfilter_script(facts):
        changes.append("os-prep: load br_netfilter and list it in /etc/modules-load.d")
    if not (facts.yes("sysctl_file") and facts["ip_forward"] == "1"):
        changes.append("os-prep: persist net.ipv4.ip_forward=1")
    registries = registries_file(ctx.inventory)  # the credential resolved before (tasks._registries)
    if registries is not None and facts["sha_registries"] != _sha(registries.text):
        changes.append(f"registries: write {k3s.REGISTRIES}")
    stale = stale_artifacts(with_release_sha256(ctx.session, ctx.source.host_artifacts(host)), facts)
    changes += [f"artifacts: {a.remote}" for a in stale]
    if facts["sha_config"] != _sha(k3s_config.render_config(ctx.inventory, host, tokens)):
        changes.append(f"config: write {k3s.CONFIG}")
    unit = k3s.unit(host.role)
    if facts.yes("unit_file") and facts["sha_unit_env"] != _sha(proxy.env_file(ctx.inventory)):
        changes.append(f"install: write /etc/systemd/system/{unit}.service.env (the proxy settings)")
    if not facts.yes("unit_file") or {"bin", "install"} & {a.key for a in stale}:
        changes.append(f"install: run the install script ({unit})")
    elif any(c.startswith(("config", "registries", "install: write")) for c in changes) or not facts.yes("active"):
        changes.append(f"install: restart {unit}")
    if facts.yes("unit_file") and not facts.yes("enabled"):
        changes.append(f"install: enable {unit} (it would not start after a reboot)")
    return changes


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def site_tokens(engine: Engine, site: str) -> k3s_config.Tokens | None:
    """The site's tokens as a bootstrap would write them (the full forms read from a running first server);
    None before the site's first bootstrap. Nothing is created or changed."""
    store = TokenStore(site)
    if not store.exists():
        return None
    tokens = k3s_config.Tokens(*store.passwords())
    engine.add_secrets(tokens.values())
    first = engine.contexts[engine.inventory.first_server.name]
    if first.failed or not first.facts.yes("active"):
        return tokens
    try:
        server_full, agent_full = cluster.read_tokens(first.session, wait_s=1)
    except RemoteError:
        return tokens
    engine.add_secrets({server_full, agent_full})
    return k3s_config.Tokens(tokens.server_password, tokens.agent_password, server_full, agent_full)


def upgrade_plan(engine: Engine, batch: int) -> UpgradePlan | None:
    """The upgrade a bootstrap with --batch would make, from the running nodes' versions (refused, UpgradeRefused,
    like the bootstrap refuses it); None when nothing runs another version or the nodes cannot be read."""
    first = engine.contexts[engine.inventory.first_server.name]
    if first.failed or not first.facts.yes("active"):
        return None
    try:
        nodes = cluster.nodes(first.session)
    except (RemoteError, ValueError):
        return None
    return plan_upgrade(engine.inventory, list(engine.contexts), nodes, batch)


def plan(engine: Engine, site: str, batch: int = 1) -> list[HostResult]:
    """Connect and probe every host; nothing on the hosts is changed."""
    contexts = list(engine.contexts.values())
    engine.each(contexts, engine.connect_and_probe)
    upgrade = upgrade_plan(engine, batch)
    tokens = site_tokens(engine, site)
    known_ca = TokenStore(site).cluster_ca()
    results = []
    for ctx in contexts:
        if ctx.failed:
            results.append(HostResult(ctx.host.name, "failed", [], ctx.error))
            continue
        problems = preflight_problems(ctx, ctx.facts)
        try:
            changes = planned_changes(ctx, tokens)
        except (ArtifactError, RemoteError, TransportError) as err:  # no bundle file for the arch, a list not read
            changes, problems = [], [*problems, str(err)]
        if upgrade is not None and upgrade.turn(ctx.host.name):
            changes.insert(0, upgrade.describe(ctx.host.name))
        if upgrade is not None and ctx.host == engine.inventory.first_server:
            changes.insert(0, "snapshot: the datastore, before any host is upgraded")
        if ctx.host == engine.inventory.first_server and known_ca and ctx.facts["ca_hash"] != known_ca:
            changes.insert(0, "new-cluster: the site's cluster is gone; a new one starts with the site's tokens")
        if ctx.host == engine.inventory.first_server and ctx.facts.yes("active"):
            manifest_sha = ctx.source.metallb_artifact().sha256
            if not pool_matches(current_pool(ctx.session), engine.inventory, manifest_sha):
                changes.append("metallb: install the manifest and apply the address pool")
        status = "failed" if problems else ("changed" if changes else "ok")
        results.append(HostResult(ctx.host.name, status, changes, "; ".join(problems) or None))
    return results
