"""Tasks for the Azure platform stacks (Pulumi, rich and the settings models load inside the task, not here)."""
from pathlib import Path

from invoke import Exit, task

from infra.stack_config import available_envs


@task(help={"env": "environment (a Pulumi.<env>.yaml at the repo root)", "out": "output directory (default out/)"})
def plan(c, env="", out="out"):
    """Offline plan of an environment: no CLI, no credentials; writes out/<env>/plan.json, graph.dot, manifests/."""
    if not env:
        raise Exit(f"plan: --env is required (one of: {', '.join(available_envs())})", code=2)
    from rich.console import Console

    from infra.offline.plan import PlanError, make_plan
    from infra.offline.render import print_plan

    try:
        recording = make_plan(env, Path(out))
    except PlanError as err:
        raise Exit("plan failed:\n" + "\n".join(f"  {p}" for p in err.problems), code=2) from None
    console = Console()
    print_plan(recording, console)
    console.print(f"\nwrote {Path(out) / env}/plan.json, graph.dot and manifests/")
