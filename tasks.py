"""The kit's tasks. Run them through ./kit (./kit --list shows them all).

Every task module imports only invoke and the standard library at load; each task imports what it uses in its
body, so `./kit --list` and the edge and lab tasks never load Pulumi (benchmarks/kit_start.py measures it).
"""
import shlex
import sys

from invoke import Collection, Exit, task

from infra import tasks as infra_tasks
from lab.tasks import ns as lab_tasks
from edge_hosts.tasks.collection import edge as edge_tasks
from agents.tasks import agents as agents_tasks
from infra.lifecycle import tasks as lifecycle_tasks
from fleet.tasks import fleet as fleet_tasks


@task(help={"k": "only tests matching this expression", "x": "stop at the first failure"})
def test(c, k="", x=False):
    """Run the whole test suite (installs the lab's system packages and builds its programs first; run as root)."""
    from lab.lifecycle.packages import ensure_packages
    from lab.programs.build import ensure_programs

    try:
        ensure_packages()
        ensure_programs()
    except RuntimeError as err:
        raise Exit(f"test: {err}", code=2)
    args = [sys.executable, "-m", "pytest"]
    if k:
        args += ["-k", k]
    if x:
        args.append("-x")
    c.run(shlex.join(args), pty=False)


ns = Collection()
ns.add_task(infra_tasks.plan)
ns.add_task(test)
ns.add_collection(lab_tasks)
ns.add_collection(edge_tasks)
ns.add_collection(agents_tasks)
ns.add_collection(fleet_tasks)
for lifecycle_task in (lifecycle_tasks.preview, lifecycle_tasks.up, lifecycle_tasks.refresh, lifecycle_tasks.destroy):
    ns.add_task(lifecycle_task)
ns.add_collection(lifecycle_tasks.stack)
