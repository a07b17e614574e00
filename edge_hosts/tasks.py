"""Invoke collection `edge`: plan, bootstrap, status, kubeconfig, reset, bundle and trust for k3s edge sites."""
from __future__ import annotations

import json as jsonlib
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Collection, Exit, task

from edge_hosts.kubeconfig import DEFAULT_PATH

if TYPE_CHECKING:  # the rest loads inside the tasks: ./kit --list and other areas' tasks never pay for it
    from edge_hosts.artifacts import ArtifactSource
    from edge_hosts.inventory import Inventory

SITE_HELP = "site name (edge_hosts/sites/<name>.yaml) or path to an inventory file"
DEFAULT_METALLB = "v0.16.1"  # github.com/metallb/metallb/releases/tag/v0.16.1 (2026-05-27), newest


def _inventory(site: str, signs_in: bool = True) -> Inventory:
    """The site's inventory, or exit 2 listing every problem; `signs_in`: the task logs in to the hosts, so the
    private key files and the sudo password must be there before anything connects."""
    from edge_hosts.inventory import InventoryError, key_file_problems, load_inventory

    try:
        inventory = load_inventory(site)
    except InventoryError as err:
        raise Exit(str(err), code=2) from None
    if not signs_in:
        return inventory
    problems = key_file_problems(inventory)
    env = inventory.ssh.sudo_password_env
    if env and inventory.ssh.user != "root" and env not in os.environ:
        problems.append(f"{inventory.source}: ssh.sudoPasswordEnv: environment variable {env} is not set")
    if problems:
        raise Exit("\n".join(problems), code=2)
    return inventory


def _selected(inventory: Inventory, hosts: str) -> list[str]:
    names = [h.name for h in inventory.hosts]
    wanted = [n.strip() for n in hosts.split(",") if n.strip()] or names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise Exit(f"--hosts: unknown host(s) {', '.join(unknown)} (site {inventory.site} has {', '.join(names)})",
                   code=2)
    return [n for n in names if n in wanted]


def _source(inventory: Inventory) -> ArtifactSource:
    from edge_hosts.artifacts import ArtifactError, ArtifactSource

    try:
        return ArtifactSource(inventory)
    except ArtifactError as err:
        raise Exit(f"{inventory.source}: bundle: {err}", code=2) from None


def _fleet_input(inventory: Inventory) -> None:
    """A fleet site's rendered Flux objects and its registry and notification credentials, before any connection."""
    if inventory.fleet is None:
        return
    from edge_hosts.steps.fleet import FleetInputError, onsite_manifest

    try:
        onsite_manifest(inventory)
    except FleetInputError as err:
        raise Exit(str(err), code=2) from None


def _registries(inventory: Inventory) -> None:
    """The site's registries.yaml can be made: its registry credential resolves (exit 2 naming the source if not)."""
    from edge_hosts.credentials import CredentialError
    from edge_hosts.registries import registries_file

    try:
        registries_file(inventory)
    except CredentialError as err:
        raise Exit(str(err), code=2) from None


def _warn(inventory: Inventory) -> None:
    """Site-wide warnings (offline: pins past end of support, no apiEndpoint for HA, speakerless nodes), on stderr."""
    from datetime import date

    from edge_hosts.advice import site_warnings

    for note in site_warnings(inventory, date.today()):
        print(f"warning: {note}", file=sys.stderr)


def _finish(site: str, results, as_json: bool) -> None:
    from edge_hosts.report import print_results

    print_results(site, results, as_json)
    _exit_if_failed(results, as_json)


def _exit_if_failed(results, as_json: bool) -> None:
    """Exit 1 when a host failed (the results are already printed)."""
    failed = [r.name for r in results if r.status == "failed"]
    if failed:
        raise Exit(f"failed on {len(failed)} host(s): {', '.join(failed)}" if not as_json else None, code=1)


@task(help={"site": SITE_HELP, "json": "print one JSON object instead of a table",
            "batch": "agents an upgrade would take at a time (as edge.bootstrap --batch; default 1)"})
def plan(c, site, json=False, batch=1):
    """Show what a bootstrap would change on each host (and an upgrade's order); changes nothing."""
    from edge_hosts import plan as planning
    from edge_hosts.engine import Engine
    from edge_hosts.report import Progress
    from edge_hosts.upgrade import UpgradeRefused

    inventory = _inventory(site)
    if int(batch) < 1:
        raise Exit(f"--batch: must be at least 1, got {batch}", code=2)
    _registries(inventory)
    _warn(inventory)
    names = [h.name for h in inventory.hosts]
    with Progress(names, enabled=not json) as progress, \
            Engine(inventory, names, 16, progress, _source(inventory)) as engine:
        try:
            results = planning.plan(engine, inventory.site, int(batch))
        except UpgradeRefused as err:
            raise Exit(str(err), code=2) from None
    _finish(inventory.site, results, json)


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
    from edge_hosts.report import Progress
    from edge_hosts.runner import Bootstrap
    from edge_hosts.upgrade import UpgradeRefused

    inventory = _inventory(site)
    low = [f"--{flag}: must be at least 1, got {value}" for flag, value in
           (("parallel", parallel), ("upload-parallel", upload_parallel), ("batch", batch),
            ("drain-timeout", drain_timeout)) if int(value) < 1]
    if low:
        raise Exit("\n".join(low), code=2)
    selected = _selected(inventory, hosts)
    _source(inventory)
    _registries(inventory)
    _fleet_input(inventory)
    _warn(inventory)
    with Progress(selected, enabled=not json) as progress:
        run = Bootstrap(inventory, selected, int(parallel), progress, Path(kubeconfig).expanduser(), int(batch),
                        int(drain_timeout))
        run.engine.limit_uploads(int(upload_parallel))
        try:
            results = run.run()
        except UpgradeRefused as err:  # before any host changed
            raise Exit(str(err), code=2) from None
    _finish(inventory.site, results, json)


@task(help={"site": SITE_HELP, "json": "print one JSON object",
            "kubeconfig": f"kubeconfig whose client certificate for the site is checked (default {DEFAULT_PATH})"})
def status(c, site, json=False, kubeconfig=str(DEFAULT_PATH)):
    """Show each host's k3s service, node readiness and version, the servers' and the kubeconfig's certificate
    expiry (a warning under 30 days), and the MetalLB pool."""
    from edge_hosts import status as statuses
    from edge_hosts.engine import Engine
    from edge_hosts.report import Progress

    inventory = _inventory(site)
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
    from edge_hosts.report import status_errors, status_notes, status_table

    emit(Console(), status_table(report))
    for line in status_errors(report) + status_notes(report):
        print(line)


@task(help={"site": SITE_HELP, "kubeconfig": f"file to merge into (default {DEFAULT_PATH})"})
def kubeconfig(c, site, kubeconfig=str(DEFAULT_PATH)):
    """Merge the site's context (named after the site) into a kubeconfig file, keeping every other context."""
    from edge_hosts import hostkeys
    from edge_hosts.engine import Engine
    from edge_hosts.kubeconfig import KubeconfigError
    from edge_hosts.report import Progress
    from edge_hosts.runner import write_kubeconfig
    from edge_hosts.ssh import RemoteError, TransportError

    inventory = _inventory(site)
    first = inventory.first_server.name
    path = Path(kubeconfig).expanduser()
    with Engine(inventory, [first], 1, Progress([first], enabled=False)) as engine:
        ctx = engine.contexts[first]
        try:
            ctx.session.connect()
            changed = write_kubeconfig(ctx, inventory, path)
        except (RemoteError, TransportError, KubeconfigError, hostkeys.HostKeyError) as err:
            raise Exit(f"kubeconfig: {first}: {err}", code=1) from None
    print(f"context {inventory.site} {'written to' if changed else 'already up to date in'} {path}")


def _confirm(question: str, command: str) -> None:
    """Ask before a destructive command; anything but yes ends it with nothing done (exit 1)."""
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise Exit(f"{command}: nothing done", code=1)


@task(help={"site": SITE_HELP, "yes": "do not ask for confirmation", "json": "print one JSON object",
            "forget": "also forget the site's tokens and do not keep the servers' etcd snapshots"})
def reset(c, site, yes=False, json=False, forget=False):
    """Remove k3s from every host of the site (agents first, then servers) and delete their nodes; etcd snapshots
    are moved aside and the site's tokens kept (a restore needs both) unless --forget."""
    from edge_hosts import reset as resetting
    from edge_hosts.engine import Engine
    from edge_hosts.report import Progress

    inventory = _inventory(site)
    names = [h.name for h in inventory.hosts]
    if not yes:
        _confirm(f"Remove k3s and all its data from {', '.join(names)} (site {inventory.site})?", "reset")
    with Progress(names, enabled=not json) as progress, Engine(inventory, names, 10, progress) as engine:
        results = resetting.reset(engine, inventory.site, forget=forget)
    _finish(inventory.site, results, json)


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
    from edge_hosts import bundle as bundles
    from edge_hosts.inventory import ARCH_ALIASES, K3S_VERSION, METALLB_VERSION, SHA256

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

    from edge_hosts import hostkeys
    from edge_hosts.report import trust_lines

    inventory = _inventory(site, signs_in=False)  # host keys are read without logging in
    known_hosts = inventory.ssh.known_hosts
    targets = [(h.name, str(h.address), inventory.ssh_for(h).port) for h in inventory.hosts]
    found = hostkeys.survey(targets, known_hosts, inventory.ssh.connect_timeout)
    print(f"host keys of site {inventory.site} (known_hosts: {known_hosts})")
    print("\n".join(trust_lines(found)))
    new = [(r.name, key) for r, key in found if r.status == "new"]
    if new and (yes or input(f"Record {len(new)} new key(s) in {known_hosts}? [y/N] ").strip().lower() in ("y", "yes")):
        hostkeys.record(known_hosts, new)
        print(f"recorded {len(new)} key(s) in {known_hosts}")
    changed = [r for r, _ in found if r.status == "changed"]
    for r in changed:
        Console(stderr=True).print(f"[bold red]HOST KEY CHANGED for {r.host} ({r.name}): now {r.fingerprint}; "
                                   f"not recorded. Remove the old entry (ssh-keygen -R '{r.name}' -f {known_hosts}) "
                                   f"only if you know why it changed.[/]")
    if changed or any(r.status == "unreachable" for r, _ in found):
        raise Exit(code=1)


@task(help={"site": SITE_HELP, "json": "print one JSON object"})
def backup(c, site, json=False):
    """Save a fresh snapshot of the site's datastore to this machine (0600, sha256-checked, with the server token a
    restore needs), keeping the last backups.keep."""
    from edge_hosts.backup import Backup, backups_dir
    from edge_hosts.engine import Engine
    from edge_hosts.report import Progress, print_results, summary
    from edge_hosts.state import TokenStore

    inventory = _inventory(site)
    if not TokenStore(inventory.site).exists():
        raise Exit(f"{TokenStore(inventory.site).dir}: no server token for site {inventory.site} (bootstrapped from "
                   "another machine?): a backup is restored with it; copy the site's state here first", code=2)
    first = inventory.first_server.name
    with Progress([first], enabled=not json) as progress, Engine(inventory, [first], 1, progress) as engine:
        run = Backup(engine, inventory)
        results = run.run()
    report = run.report()
    if json:
        print(jsonlib.dumps({**summary(inventory.site, results), "backup": report}))
    else:
        print_results(inventory.site, results, as_json=False)
        if report["saved"]:
            print(f"backup {report['saved']['file']} ({report['saved']['size']} bytes, sha256 "
                  f"{report['saved']['sha256']}); {len(report['removed'])} old one(s) removed; "
                  f"backups kept in {backups_dir(inventory)}")
    _exit_if_failed(results, json)


@task(help={"site": SITE_HELP, "snapshot": "backup file from edge.backup (its .json manifest beside it)",
            "yes": "do not ask for confirmation", "json": "print one JSON object",
            "kubeconfig": f"kubeconfig file to refresh the site's context in (default {DEFAULT_PATH})"})
def restore(c, site, snapshot, yes=False, json=False, kubeconfig=str(DEFAULT_PATH)):
    """Restore the site from a backup: k3s's cluster-reset restore on the first server (a datastore copy on sqlite
    sites), then the other servers and the agents rejoin."""
    from edge_hosts.backup import Restore, restore_problems
    from edge_hosts.engine import Engine
    from edge_hosts.report import Progress

    inventory = _inventory(site)
    path = Path(snapshot).expanduser()
    manifest, problems = restore_problems(inventory, path)
    if problems:
        raise Exit("\n".join(problems), code=2)
    names = [h.name for h in inventory.hosts]
    if not yes:
        _confirm(f"Replace the cluster state of site {inventory.site} ({', '.join(names)}) with {path}?", "restore")
    with Progress(names, enabled=not json) as progress, Engine(inventory, names, 10, progress) as engine:
        results = Restore(engine, inventory, path, manifest, Path(kubeconfig).expanduser()).run()
    _finish(inventory.site, results, json)


@task(name="rotate-certs", help={"site": SITE_HELP, "json": "print one JSON object",
                                 "kubeconfig": f"kubeconfig file to refresh (default {DEFAULT_PATH})"})
def rotate_certs(c, site, json=False, kubeconfig=str(DEFAULT_PATH)):
    """Rotate the k3s certificates server by server (stop, rotate, start, Ready) and refresh the kubeconfig; says
    what to update in the Azure DevOps connection."""
    import datetime

    from edge_hosts import certs
    from edge_hosts.engine import Engine
    from edge_hosts.report import Progress, print_results, summary

    inventory = _inventory(site)
    path = Path(kubeconfig).expanduser()
    names = [h.name for h in inventory.servers]
    old = certs.kubeconfig_report(path, inventory.site, datetime.datetime.now(datetime.timezone.utc))
    with Progress(names, enabled=not json) as progress, Engine(inventory, names, 1, progress) as engine:
        results = certs.RotateCerts(engine, inventory, path).run()
    note = certs.devops_note(inventory, old if old and "expires" in old else None)
    if json:
        print(jsonlib.dumps({**summary(inventory.site, results), "azureDevOps": note}))
    else:
        print_results(inventory.site, results, as_json=False)
        print(note)
    _exit_if_failed(results, json)


edge = Collection("edge", plan, bootstrap, status, kubeconfig, reset, bundle, trust, backup, restore, rotate_certs)
