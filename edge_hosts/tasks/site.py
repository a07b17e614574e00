"""Invoke tasks that build and inspect a site: plan, bootstrap, status, kubeconfig, bundle and trust."""
from __future__ import annotations

import json as jsonlib
import shutil
from pathlib import Path

from invoke import Exit, task

from edge_hosts.access.kubeconfig import DEFAULT_PATH
from edge_hosts.tasks.inputs import (DEFAULT_METALLB, SITE_HELP, artifact_source, at_least_one, check_fleet_input,
                                     check_registries, confirmed, finish, kubeconfig_problems, refuse, selected_hosts,
                                     site_inventory, state_problems, warn_site)


@task(help={"site": SITE_HELP, "json": "print one JSON object instead of a table",
            "batch": "agents an upgrade would take at a time (as edge.bootstrap --batch; default 1)"})
def plan(c, site, json=False, batch=1):
    """Show what a bootstrap would change on each host (and an upgrade's order); changes nothing."""
    from edge_hosts.bootstrap import plan as planning
    from edge_hosts.engine.fanout import Engine
    from edge_hosts.engine.progress import Progress
    from edge_hosts.operations.upgrade import UpgradeRefused

    problems = at_least_one(batch=batch)
    inventory = site_inventory(site, problems)
    check_registries(inventory, problems)
    source = artifact_source(inventory, problems)
    warn_site(inventory)  # offline advice, also beside input problems: a plan is where a user looks for it
    refuse(problems)
    names = [h.name for h in inventory.hosts]
    with Progress(names, enabled=not json) as progress, Engine(inventory, names, 16, progress, source) as engine:
        try:
            results = planning.plan(engine, inventory.site, int(batch))
        except UpgradeRefused as err:
            raise Exit(str(err), code=2) from None
    finish(inventory.site, results, json)


@task(help={"site": SITE_HELP, "hosts": "only these hosts (comma-separated names)",
            "parallel": "hosts worked on at the same time (default 10)", "json": "print one JSON object",
            "kubeconfig": f"kubeconfig file to merge the site's context into (default {DEFAULT_PATH})",
            "upload_parallel": "uploads to the site at the same time (default 2): a thin uplink is shared",
            "batch": "agents upgraded at a time when the k3s pin changes (default 1)",
            "drain_timeout": "seconds a drain may take before an upgrade stops (default 300)"})
def bootstrap(c, site, hosts="", parallel=10, json=False, kubeconfig=str(DEFAULT_PATH), upload_parallel=2,
              batch=1, drain_timeout=300):
    """Bring the site's hosts to k3s + MetalLB, changing only what differs; a changed k3s pin upgrades the site
    (servers one at a time, then agents in batches, each drained)."""
    from edge_hosts.engine.progress import Progress
    from edge_hosts.bootstrap.runner import Bootstrap
    from edge_hosts.operations.upgrade import UpgradeRefused
    from edge_hosts.tasks.running import run_locked, site_lock

    path = Path(kubeconfig).expanduser()
    problems = at_least_one(parallel=parallel, upload_parallel=upload_parallel, batch=batch,
                            drain_timeout=drain_timeout) + kubeconfig_problems(path)
    inventory = site_inventory(site, problems)
    selected = selected_hosts(inventory, hosts, problems)
    artifact_source(inventory, problems)
    check_registries(inventory, problems)
    check_fleet_input(inventory, problems)
    refuse(problems + state_problems(inventory))
    warn_site(inventory)
    with site_lock(inventory, "edge.bootstrap") as lock, Progress(selected, enabled=not json) as progress:
        run = Bootstrap(inventory, selected, int(parallel), progress, path, int(batch), int(drain_timeout))
        run.engine.limit_uploads(int(upload_parallel))
        try:
            results, interrupted = run_locked(lock, run.engine, run.run, selected)
        except UpgradeRefused as err:  # before any host changed
            raise Exit(str(err), code=2) from None
    finish(inventory.site, results, json, interrupted)


@task(help={"site": SITE_HELP, "json": "print one JSON object",
            "kubeconfig": f"kubeconfig whose client certificate for the site is checked (default {DEFAULT_PATH})"})
def status(c, site, json=False, kubeconfig=str(DEFAULT_PATH)):
    """Show each host's k3s service, node readiness and version, the servers' and the kubeconfig's certificate
    expiry (a warning under 30 days), and the MetalLB pool."""
    from edge_hosts.operations import status as statuses
    from edge_hosts.engine.fanout import Engine
    from edge_hosts.engine.progress import Progress

    problems: list[str] = []
    inventory = site_inventory(site, problems)
    refuse(problems)
    names = [h.name for h in inventory.hosts]
    with Progress(names, enabled=False) as progress, Engine(inventory, names, 16, progress) as engine:
        report = statuses.status(engine, Path(kubeconfig).expanduser())
    if json:
        print(jsonlib.dumps(report))
    else:
        _print_status(report)
    if any(not h["reachable"] or not h["ready"] for h in report["hosts"]):
        raise Exit(code=1)


def _print_status(report: dict) -> None:
    from rich.console import Console

    from common.terminal import emit
    from edge_hosts.tasks.tables import status_errors, status_notes, status_table

    emit(Console(), status_table(report))
    for line in status_errors(report) + status_notes(report):
        print(line)


@task(help={"site": SITE_HELP, "kubeconfig": f"file to merge into (default {DEFAULT_PATH})"})
def kubeconfig(c, site, kubeconfig=str(DEFAULT_PATH)):
    """Merge the site's context (named after the site) into a kubeconfig file, keeping every other context."""
    from edge_hosts.access import hostkeys
    from edge_hosts.engine.fanout import Engine
    from edge_hosts.access.kubeconfig import KubeconfigError
    from edge_hosts.engine.progress import Progress
    from edge_hosts.steps.kubeconfig import write_kubeconfig
    from edge_hosts.access.ssh import RemoteError, TransportError

    path = Path(kubeconfig).expanduser()
    problems = kubeconfig_problems(path)
    inventory = site_inventory(site, problems)
    refuse(problems)
    first = inventory.first_server.name
    with Engine(inventory, [first], 1, Progress([first], enabled=False)) as engine:
        ctx = engine.contexts[first]
        try:
            ctx.session.connect()
            changed = write_kubeconfig(ctx, inventory, path)
        except (RemoteError, TransportError, KubeconfigError, hostkeys.HostKeyError) as err:
            raise Exit(f"kubeconfig: {first}: {err}", code=1) from None
    print(f"context {inventory.site} {'written to' if changed else 'already up to date in'} {path}")


@task(help={"version": "k3s version, e.g. v1.37.2+k3s1", "arch": "x86_64 | arm64 | armv7 (or amd64, aarch64, armhf...)",
            "out": "bundle directory", "metallb_version": f"MetalLB version (default {DEFAULT_METALLB})",
            "mirror": "release mirror (default https://github.com)",
            "raw": "raw file mirror (default https://raw.githubusercontent.com)",
            "install_sha256": "sha256 of the reviewed install.sh for this version (it has no published checksum)",
            "metallb_sha256": "sha256 of the reviewed metallb-native.yaml (no published checksum)",
            "registry_mirror": "registry serving the MetalLB images (default: quay.io, where MetalLB publishes them)",
            "flux_operator_digest": "sha256:<hex> of the reviewed Flux Operator v0.58.1 image (index): the bundle then "
                                    "carries Flux for fleet delivery",
            "flux_registry_mirror": "registry serving the Flux images (default: ghcr.io, where they are published)"})
def bundle(c, version, arch, out, install_sha256, metallb_sha256, metallb_version=DEFAULT_METALLB,
           mirror="https://github.com", raw="https://raw.githubusercontent.com",
           registry_mirror="", flux_operator_digest="", flux_registry_mirror=""):
    """Download a verified air-gap bundle (k3s binary, install script, images, MetalLB manifest and images; with
    --flux-operator-digest also the Flux Operator's install.yaml and the Flux images)."""
    from edge_hosts.artifacts import bundle as bundles
    from edge_hosts.inventory.model import ARCH_ALIASES, K3S_VERSION, METALLB_VERSION, SHA256

    registry_mirror = registry_mirror or bundles.DEFAULT_REGISTRY
    problems = []
    if not K3S_VERSION.match(version):
        problems.append(f"--version: '{version}' is not a pinned k3s version like v1.37.2+k3s1")
    if arch not in ARCH_ALIASES:
        problems.append(f"--arch: '{arch}' is not one of {', '.join(ARCH_ALIASES)}")
    arch = ARCH_ALIASES.get(arch, arch)
    if not METALLB_VERSION.match(metallb_version):
        problems.append(f"--metallb-version: '{metallb_version}' is not a pinned version like v0.16.1")
    for flag, value in (("--install-sha256", install_sha256), ("--metallb-sha256", metallb_sha256)):
        if not SHA256.match(value):
            problems.append(f"{flag}: expected 64 lowercase hex digits")
    flux_registry_mirror = flux_registry_mirror or bundles.FLUX_REGISTRY
    for flag, value in (("--registry-mirror", registry_mirror), ("--flux-registry-mirror", flux_registry_mirror)):
        if not value.startswith(("https://", "http://")):
            problems.append(f"{flag}: '{value}' is not an http(s) URL")
    if flux_operator_digest and not SHA256.match(flux_operator_digest.removeprefix("sha256:")):
        problems.append("--flux-operator-digest: expected sha256: and 64 lowercase hex digits")
    if problems:
        raise Exit("\n".join(problems), code=2)
    flux = bundles.FluxPins("sha256:" + flux_operator_digest.removeprefix("sha256:"),
                            flux_registry_mirror) if flux_operator_digest else None
    existed = Path(out).exists()
    try:
        manifest = bundles.build_bundle(version, arch, Path(out), metallb_version, install_sha256, metallb_sha256,
                                        mirror, raw, registry_mirror, flux)
    except bundles.BundleError as err:
        if not existed:  # nothing left half-way: not even the empty directory this run made
            shutil.rmtree(out, ignore_errors=True)
        raise Exit(f"edge.bundle: {err}", code=1) from None
    flux_note = f", Flux Operator {manifest['flux_operator']}" if flux else ""
    print(f"bundle {out}: {len(manifest['files'])} files verified (k3s {version}, MetalLB {metallb_version}"
          f"{flux_note})")


@task(help={"site": SITE_HELP, "yes": "record new keys without asking"})
def trust(c, site, yes=False):
    """Show the hosts' SSH key fingerprints and record new ones in the site's known_hosts."""
    from rich.console import Console

    from common.files import write_problem
    from edge_hosts.access import hostkeys
    from edge_hosts.tasks.tables import trust_lines

    problems: list[str] = []
    inventory = site_inventory(site, problems, signs_in=False)  # host keys are read without logging in
    known_hosts = inventory.ssh.known_hosts
    unwritable = write_problem(known_hosts)
    refuse(problems + ([f"{inventory.source}: ssh.knownHosts: {unwritable}"] if unwritable and not problems else []))
    targets = [(h.name, str(h.address), inventory.ssh_for(h).port) for h in inventory.hosts]
    found = hostkeys.survey(targets, known_hosts, inventory.ssh.connect_timeout)
    print(f"host keys of site {inventory.site} (known_hosts: {known_hosts})")
    print("\n".join(trust_lines(found)))
    new = [(r.name, key) for r, key in found if r.status == "new"]
    if new and (yes or confirmed(f"Record {len(new)} new key(s) in {known_hosts}?", "edge.trust")):
        hostkeys.record(known_hosts, new)
        print(f"recorded {len(new)} key(s) in {known_hosts}")
    changed = [r for r, _ in found if r.status == "changed"]
    for r in changed:
        Console(stderr=True).print(f"[bold red]HOST KEY CHANGED for {r.host} ({r.name}): now {r.fingerprint}; "
                                   f"not recorded. Remove the old entry (ssh-keygen -R '{r.name}' -f {known_hosts}) "
                                   f"only if you know why it changed.[/]")
    if changed or any(r.status == "unreachable" for r, _ in found):
        raise Exit(code=1)
