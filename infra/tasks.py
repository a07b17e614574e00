"""Tasks for the Azure platform stacks (Pulumi, rich and the settings models load inside the task, not here)."""
from pathlib import Path

from invoke import Exit, task

from infra.stack.stack_config import ROOT, available_envs


@task(help={"env": "environment (a Pulumi.<env>.yaml at the repo root)", "out": "output directory (default out/)",
            "diff": "an earlier plan.json: show what changed, resource by resource, instead of the tree",
            "project_dir": "directory holding the Pulumi.<env>.yaml stack files (default: the kit's repo root)"})
def plan(c, env="", out="out", diff="", project_dir=""):
    """Offline plan of an environment (no CLI, no credentials): writes out/<env>/plan.json, graph.dot, graph.svg
    and manifests/."""
    root = Path(project_dir).resolve() if project_dir else ROOT
    if not env:
        raise Exit(f"plan: --env is required (one of: {', '.join(available_envs(root))})", code=2)
    from rich.console import Console

    from infra.offline.artifacts import GRAPHVIZ_HINT, plan_document
    from infra.offline.diff import PlanFileError, plan_changes, read_plan
    from infra.offline.plan import PlanError, make_plan
    from common.terminal import emit
    from infra.offline.render import print_changes, print_plan

    try:
        old = read_plan(Path(diff), env) if diff else None  # read before the new plan may overwrite that very file
        recording, drawn = make_plan(env, Path(out), root)
    except PlanFileError as err:
        raise Exit(f"plan: {err}", code=2) from None
    except PlanError as err:
        raise Exit("plan failed:\n" + "\n".join(f"  {p}" for p in err.problems), code=2) from None
    console = Console()
    if old is None:
        print_plan(recording, console)
    else:
        print_changes(plan_changes(old, plan_document(recording)), diff, console)
    emit(console, f"\nwrote {Path(out) / env}/: plan.json, graph.dot{', graph.svg' if drawn else ''}, manifests/")
    if not drawn:
        emit(console, GRAPHVIZ_HINT)
