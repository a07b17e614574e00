"""The kit's tasks. Run them through ./kit (./kit --list shows them all).

Every task module imports only invoke and the standard library at load; each task imports what it uses in its
body, so `./kit --list` and the edge and lab tasks never load Pulumi (benchmarks/kit_start.py measures it).
"""
import os
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


@task(help={"module": "one module of devtools/mutation_targets.yaml, e.g. fleet/promote.py (default: all of them)",
            "tests": "pytest arguments for --module instead of its listed tests (e.g. a faster selection)",
            "children": "mutants tested at once (default: the CPUs)"})
def mutate(c, module="", tests="", children=0):
    """Mutation testing of the safety-critical modules (mutmut; slow: minutes per module): the score per module and
    the mutants that survived. Not part of `test`; installs the `mutate` extra on first use."""
    from devtools import mutation

    targets = mutation.load_targets()
    if module and module not in targets and not tests:
        raise Exit(f"mutate: {module} is not in {mutation.TARGETS_FILE.name} (one of: {', '.join(targets)}); "
                   "give --tests to mutate another module", code=2)
    chosen = {module: {**targets.get(module, {}), **({"tests": shlex.split(tests)} if tests else {})}} \
        if module else targets
    mutation.ensure_mutmut()
    scores = []
    for name, target in chosen.items():
        print(f"mutate: {name} (a copy of the checkout in {mutation.work_dir(name).parent})", flush=True)
        try:
            scores.append(mutation.score(name, target, children or os.cpu_count() or 1))
        except mutation.MutationError as err:
            raise Exit(f"mutate: {name}: {err}", code=1)
    print(mutation.report(scores))


ns = Collection()
ns.add_task(infra_tasks.plan)
ns.add_task(test)
ns.add_task(mutate)
ns.add_collection(lab_tasks)
ns.add_collection(edge_tasks)
ns.add_collection(agents_tasks)
ns.add_collection(fleet_tasks)
for lifecycle_task in (lifecycle_tasks.preview, lifecycle_tasks.up, lifecycle_tasks.refresh, lifecycle_tasks.destroy):
    ns.add_task(lifecycle_task)
ns.add_collection(lifecycle_tasks.stack)
