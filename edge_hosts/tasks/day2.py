"""Invoke tasks of day-2 operations on a site: reset, backup, restore and rotate-certs."""
from __future__ import annotations

import json as jsonlib
from pathlib import Path

from invoke import task

from edge_hosts.access.kubeconfig import DEFAULT_PATH
from edge_hosts.tasks.inputs import (SITE_HELP, confirm, exit_if_failed, finish, kubeconfig_problems, refuse,
                                     site_inventory, state_problems)


@task(help={"site": SITE_HELP, "yes": "do not ask for confirmation", "json": "print one JSON object",
            "forget": "also forget the site's tokens and do not keep the servers' etcd snapshots"})
def reset(c, site, yes=False, json=False, forget=False):
    """Remove k3s from every host of the site (agents first, then servers) and delete their nodes; etcd snapshots
    are moved aside and the site's tokens kept (a restore needs both) unless --forget."""
    from edge_hosts.operations import reset as resetting
    from edge_hosts.engine.fanout import Engine
    from edge_hosts.engine.progress import Progress

    from edge_hosts.tasks.running import run_locked, site_lock

    problems: list[str] = []
    inventory = site_inventory(site, problems)
    refuse(problems + state_problems(inventory))
    names = [h.name for h in inventory.hosts]
    if not yes:
        confirm(f"Remove k3s and all its data from {', '.join(names)} (site {inventory.site})?", "reset")
    with site_lock(inventory, "edge.reset") as lock, Progress(names, enabled=not json) as progress, \
            Engine(inventory, names, 10, progress) as engine:
        results, interrupted = run_locked(lock, engine, lambda: resetting.reset(engine, inventory.site, forget=forget),
                                          names)
    finish(inventory.site, results, json, interrupted)


@task(help={"site": SITE_HELP, "json": "print one JSON object"})
def backup(c, site, json=False):
    """Save a fresh snapshot of the site's datastore to this machine (0600, sha256-checked, with the server token a
    restore needs), keeping the last backups.keep."""
    from edge_hosts.operations.backup import Backup, backups_dir
    from edge_hosts.engine.fanout import Engine
    from edge_hosts.engine.progress import Progress
    from edge_hosts.tasks.tables import print_results
    from edge_hosts.engine.results import summary
    from edge_hosts.access.state import TokenStore

    from common.files import write_problem
    from edge_hosts.tasks.running import run_locked, site_lock

    problems: list[str] = []
    inventory = site_inventory(site, problems)
    if not TokenStore(inventory.site).exists():
        problems.append(f"{TokenStore(inventory.site).dir}: no server token for site {inventory.site} (bootstrapped "
                        "from another machine?): a backup is restored with it; copy the site's state here first")
    saved = write_problem(backups_dir(inventory) / "backup")
    refuse(problems + state_problems(inventory) + ([f"{inventory.source}: backups.dir: {saved}"] if saved else []))
    first = inventory.first_server.name
    with site_lock(inventory, "edge.backup") as lock, Progress([first], enabled=not json) as progress, \
            Engine(inventory, [first], 1, progress) as engine:
        run = Backup(engine, inventory)
        results, interrupted = run_locked(lock, engine, run.run, [first])
    if interrupted:
        finish(inventory.site, results, json, interrupted)
    report = run.report()
    if json:
        print(jsonlib.dumps({**summary(inventory.site, results), "backup": report}))
    else:
        print_results(inventory.site, results, as_json=False)
        if report["saved"]:
            print(f"backup {report['saved']['file']} ({report['saved']['size']} bytes, sha256 "
                  f"{report['saved']['sha256']}); {len(report['removed'])} old one(s) removed; "
                  f"backups kept in {backups_dir(inventory)}")
    exit_if_failed(results, json)


@task(help={"site": SITE_HELP, "snapshot": "backup file from edge.backup (its .json manifest beside it)",
            "yes": "do not ask for confirmation", "json": "print one JSON object",
            "kubeconfig": f"kubeconfig file to refresh the site's context in (default {DEFAULT_PATH})"})
def restore(c, site, snapshot, yes=False, json=False, kubeconfig=str(DEFAULT_PATH)):
    """Restore the site from a backup: k3s's cluster-reset restore on the first server (a datastore copy on sqlite
    sites), then the other servers and the agents rejoin."""
    from edge_hosts.operations.restore import Restore, restore_problems
    from edge_hosts.engine.fanout import Engine
    from edge_hosts.engine.progress import Progress

    from edge_hosts.tasks.running import run_locked, site_lock

    config = Path(kubeconfig).expanduser()
    problems = kubeconfig_problems(config)
    inventory = site_inventory(site, problems)
    path = Path(snapshot).expanduser()
    manifest, snapshot_problems = restore_problems(inventory, path)
    refuse(problems + snapshot_problems + state_problems(inventory))
    names = [h.name for h in inventory.hosts]
    if not yes:
        confirm(f"Replace the cluster state of site {inventory.site} ({', '.join(names)}) with {path}?", "restore")
    with site_lock(inventory, "edge.restore") as lock, Progress(names, enabled=not json) as progress, \
            Engine(inventory, names, 10, progress) as engine:
        results, interrupted = run_locked(lock, engine, Restore(engine, inventory, path, manifest, config).run, names)
    finish(inventory.site, results, json, interrupted)


@task(name="rotate-certs", help={"site": SITE_HELP, "json": "print one JSON object",
                                 "kubeconfig": f"kubeconfig file to refresh (default {DEFAULT_PATH})"})
def rotate_certs(c, site, json=False, kubeconfig=str(DEFAULT_PATH)):
    """Rotate the k3s certificates server by server (stop, rotate, start, Ready) and refresh the kubeconfig; says
    what to update in the Azure DevOps connection."""
    import datetime

    from edge_hosts.operations import certs
    from edge_hosts.engine.fanout import Engine
    from edge_hosts.engine.progress import Progress
    from edge_hosts.tasks.tables import print_results
    from edge_hosts.engine.results import summary

    from edge_hosts.tasks.running import run_locked, site_lock

    path = Path(kubeconfig).expanduser()
    problems = kubeconfig_problems(path)
    inventory = site_inventory(site, problems)
    refuse(problems + state_problems(inventory))
    names = [h.name for h in inventory.hosts]  # servers, then the agents
    old = certs.kubeconfig_report(path, inventory.site, datetime.datetime.now(datetime.timezone.utc))
    with site_lock(inventory, "edge.rotate-certs") as lock, Progress(names, enabled=not json) as progress, \
            Engine(inventory, names, 1, progress) as engine:
        results, interrupted = run_locked(lock, engine, certs.RotateCerts(engine, inventory, path).run, names)
    if interrupted:
        finish(inventory.site, results, json, interrupted)
    note = certs.devops_note(inventory, old if old and "expires" in old else None)
    if json:
        print(jsonlib.dumps({**summary(inventory.site, results), "azureDevOps": note}))
    else:
        print_results(inventory.site, results, as_json=False)
        print(note)
    exit_if_failed(results, json)
