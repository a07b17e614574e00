"""`./kit plan --env X`: the real program, the env's real config, Pulumi's mock runtime, no credentials."""
import runpy
from pathlib import Path

from infra.stack import settings_rules
from infra.offline import policies
from infra.offline.artifacts import write_plan
from infra.offline.runtime import Recording, record
from infra.stack.stack_config import (ORGANIZATION, PROJECT, ROOT, SettingsError, available_envs, engine_config,
                                load_stack, namespace_problems, project_values, read_stack_file, stack_file)


class PlanError(Exception):
    """The plan cannot be made or breaks the kit's checks; `problems` lists every one."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def run_program() -> None:
    """Exactly what `pulumi up` runs: the infra package's __main__."""
    runpy.run_module("infra", run_name="__main__")


def record_env(env: str, root: Path = ROOT) -> Recording:
    """Validate the env's stack file, then record the program under mocks; raise PlanError listing problems."""
    path = stack_file(env, root)
    if not path.exists():
        raise PlanError([f"{path.name}: no such stack file; environments here: {', '.join(available_envs(root))}"])
    try:
        config = read_stack_file(path)
    except SettingsError as err:
        raise PlanError(err.problems) from None
    problems = namespace_problems(config, path.name)
    try:
        stack = load_stack(project_values(config), source=path.name, env=env, organization=ORGANIZATION)
    except SettingsError as err:
        raise PlanError(problems + err.problems) from None
    if problems:
        raise PlanError(problems)
    values, secret_keys, unset_secrets = engine_config(config, stack.settings)
    recording = record(run_program, project=PROJECT, stack=env, config=values, secret_keys=secret_keys)
    recording.notes += settings_rules.warnings(stack.settings)
    recording.notes += [f"secret config {k!r} is not set yet (a placeholder stood in): before pulumi up, run "
                        f"pulumi config set --secret {k} --stack {env}" for k in unset_secrets]
    problems = policies.violations(recording, protected=stack.settings.lifecycle.protected)
    if problems:
        raise PlanError([f"{path.name}: policy: {p}" for p in problems])
    return recording


def make_plan(env: str, out_root: Path, root: Path = ROOT) -> tuple[Recording, bool]:
    """Record the env and write out/<env>/ (plan.json, graph.dot, graph.svg when Graphviz is here, manifests/).

    Returns the recording and whether graph.svg was drawn."""
    recording = record_env(env, root)
    return recording, write_plan(recording, out_root / env)
