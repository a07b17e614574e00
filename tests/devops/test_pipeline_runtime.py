"""What the pipelines assume at run time: each job's tools exist on its agents, and no trigger starts a doomed run."""
import re
import subprocess

import pytest
import yaml

from agents.build import image_tools
from infra.devops.names import pool_arches
from tests.devops.devops_plan import KIT_ENVS, ROOT, kit_settings
from tests.devops.pipeline_model import compile_pipeline, jobs, steps

ARGUMENTS = {"azure-pipelines.yml": {"modelVersion": "1.4.2"}}
PIPELINES = {path.name: ARGUMENTS.get(path.name, {}) for path in sorted((ROOT / "pipelines").glob("*.yml"))}
PLATFORM = {"amd64": "linux/amd64", "arm64": "linux/arm64", "arm": "linux/arm/v7"}
# The commands worth checking (the rest is POSIX sh and coreutils, in every image).
WATCHED = {"az", "pulumi", "kubectl", "kubelogin", "buildctl", "docker", "python3", "git", "curl", "jq", "helm"}
TASK_NEEDS = {"AzureCLI@2": {"az"}, "Kubernetes@1": {"kubectl"}, "Docker@2": {"docker"}}
TASK_INSTALLS = {"DockerInstaller@0": "docker", "KubectlInstaller@0": "kubectl", "KubeloginInstaller@0": "kubelogin"}
# ./kit runs its tasks from a venv it creates with python3; the stack tasks drive the Pulumi CLI, whose state
# backend (azblob) signs in through the Azure CLI.
KIT_NEEDS = {"python3"}
KIT_STACK_TASKS = {"stack.ephemeral", "stack.reap", "preview", "destroy", "up"}


def served_arches() -> dict[str, str]:
    return {pool: arch for env in KIT_ENVS for pool, arch in pool_arches(kit_settings(env)[1]).items()}


def commands(script: str, seen: frozenset = frozenset()) -> set[str]:
    """Watched commands a shell script runs, following `sh pipelines/scripts/<x>.sh` into the script."""
    found = set()
    for line in script.splitlines():
        for part in re.split(r"\$\(|\||&&|;|\bthen\b|\bdo\b|`", line):
            words = part.split()
            if not words:
                continue
            if words[0] in WATCHED:
                found.add(words[0])
            if words[0] == "./kit":
                found |= KIT_NEEDS | ({"pulumi", "az"} if len(words) > 1 and words[1] in KIT_STACK_TASKS else set())
            if words[0] == "sh" and len(words) > 1 and words[1].startswith("pipelines/scripts/") \
                    and words[1] not in seen:
                found |= commands((ROOT / words[1]).read_text(), seen | {words[1]})
    return found


def step_needs(step: dict) -> set[str]:
    needs = set(TASK_NEEDS.get(step.get("task", ""), set()))
    if step.get("task") == "Kubernetes@1" and step.get("inputs", {}).get("connectionType") == "Azure Resource Manager":
        needs.add("kubelogin")  # an Entra ID cluster's kubeconfig runs kubelogin
    for key in ("script", "bash"):
        needs |= commands(step.get(key, ""))
    return needs | commands(step.get("inputs", {}).get("inlineScript", ""))


def missing_tools(job: dict, arch: str) -> list[str]:
    """'step: tool' for each tool a step calls that neither the image nor an earlier step of the job provides."""
    have, missing = set(image_tools(PLATFORM[arch])), []
    for index, step in enumerate(steps(job)):
        missing += [f"step {index} ({step.get('displayName', step.get('task', 'script'))}): {tool}"
                    for tool in sorted(step_needs(step) - have)]
        if step.get("task") in TASK_INSTALLS:
            have.add(TASK_INSTALLS[step["task"]])
    return missing


def all_jobs():
    for name, arguments in PIPELINES.items():
        pipeline = compile_pipeline(ROOT / "pipelines" / name, arguments)
        found = jobs(pipeline) if "stages" in pipeline else [("", job) for job in pipeline["jobs"]]
        yield from ((name, stage, job) for stage, job in found)


@pytest.mark.parametrize("name, stage, job", list(all_jobs()),
                         ids=lambda v: v if isinstance(v, str) else v.get("job", v.get("deployment")))
def test_every_tool_a_job_calls_is_in_its_agents_image_or_installed_before(name, stage, job):
    arch = served_arches()[job["pool"]["name"]]
    assert missing_tools(job, arch) == [], f"{name} {stage}: runs on {job['pool']['name']} ({arch})"


def test_the_check_finds_a_tool_the_image_lacks_or_installs_too_late():
    pulumi_on_armv7 = {"steps": [{"script": "./kit stack.reap --parallel 4"}]}
    assert missing_tools(pulumi_on_armv7, "arm") == ["step 0 (script): az", "step 0 (script): pulumi"]
    late = {"steps": [{"task": "Docker@2", "inputs": {"command": "login"}},
                      {"task": "DockerInstaller@0", "inputs": {"dockerVersion": "27.5.1"}}]}
    assert missing_tools(late, "amd64") == ["step 0 (Docker@2): docker"]
    followed = {"steps": [{"script": "sh pipelines/scripts/smoke-test.sh"}]}
    assert commands(followed["steps"][0]["script"]) == {"kubectl", "python3"}


def test_the_kit_pipelines_run_where_the_kit_can_run():
    for name in ("pr-ephemeral.yml", "reaper.yml"):
        for _, _, job in [j for j in all_jobs() if j[0] == name]:
            assert {"pulumi", "az", "python3"} <= set().union(*(step_needs(s) for s in steps(job)))
            assert served_arches()[job["pool"]["name"]] == "amd64"


def startable_by_trigger(document: dict) -> bool:
    """Whether a push, a pull request or a schedule can start the pipeline without anyone giving parameters."""
    return (document.get("trigger", "") != "none" or document.get("pr", "") != "none"
            or bool(document.get("schedules")))


@pytest.mark.parametrize("name", PIPELINES)
def test_a_trigger_never_starts_a_run_that_fails_at_once(name):
    document = yaml.safe_load((ROOT / "pipelines" / name).read_text())
    undefaulted = [p["name"] for p in document.get("parameters", []) if "default" not in p]
    if startable_by_trigger(document):
        assert undefaulted == [], f"{name}: a triggered run would have no {undefaulted}"
    model = next((p for p in document.get("parameters", []) if p["name"] == "modelVersion"), None)
    if model is not None and "default" in model:  # a default must itself be a pinned version
        check = subprocess.run(["sh", str(ROOT / "pipelines/scripts/check-model-version.sh")],
                               env={"MODEL_VERSION": str(model["default"]), "PATH": "/usr/bin:/bin"},
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr


def test_the_delivery_pipeline_is_started_by_hand_with_a_model_version():
    document = yaml.safe_load((ROOT / "pipelines" / "azure-pipelines.yml").read_text())
    assert not startable_by_trigger(document)
    assert startable_by_trigger({**document, "trigger": {"branches": {"include": ["main"]}}})


def test_the_aks_jobs_install_nothing_the_image_carries():
    installers = [step.get("task") for name, _, job in all_jobs() for step in steps(job)
                  if step.get("task") in {"KubectlInstaller@0", "KubeloginInstaller@0"}]
    assert installers == [], "kubectl and kubelogin come pinned with the agent image"
