"""pipelines/pr-ephemeral.yml and pipelines/reaper.yml parse, and call the kit's tasks with valid options."""
import re
import shlex

import pytest
import yaml
from invoke.parser import Parser

import tasks as kit
from infra.lifecycle.ephemeral import NAME, parse_ttl
from infra.stack.stack_config import ROOT, available_envs, project_values, read_stack_file, stack_file

PIPELINES = ROOT / "pipelines"
PARAMETER = re.compile(r"\$\{\{\s*parameters\.(\w+)\s*\}\}")
SAMPLE_VARIABLES = {"System.PullRequest.PullRequestId": "4711", "Agent.TempDirectory": "/tmp",
                    "ephemeralStack": "pr-4711-0a1b2c"}
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "2>&1"}


def _load(name: str) -> dict:
    return yaml.safe_load((PIPELINES / name).read_text())


def _defaults(pipeline: dict) -> dict[str, str]:
    return {p["name"]: str(p["default"]) for p in pipeline.get("parameters", [])}


def _steps(pipeline: dict) -> list[dict]:
    return [step for job in pipeline["jobs"] for step in job["steps"]]


def _kit_calls(pipeline: dict) -> list[tuple[str, dict]]:
    """Every ./kit command in the scripts, parsed by the kit's own task parser (ParseError on a bad option)."""
    defaults, calls = _defaults(pipeline), []
    parser = Parser(contexts=kit.ns.to_contexts())
    for step in _steps(pipeline):
        script = step.get("inputs", {}).get("inlineScript", "") or step.get("script", "")
        for line in script.splitlines():
            if "./kit " not in line:
                continue
            line = PARAMETER.sub(lambda m: defaults[m[1]], line)
            line = re.sub(r"\$\(([\w.]+)\)", lambda m: SAMPLE_VARIABLES[m[1]], line)
            words = shlex.split(line[line.index("./kit ") + len("./kit "):])
            words = words[:next((i for i, w in enumerate(words) if w in SHELL_OPERATORS), len(words))]
            for context in parser.parse_argv(words):
                calls.append((context.name, {k: a.value for k, a in context.args.items()}))
    return calls


def _x86_pools(env: str) -> set[str]:
    agents = project_values(read_stack_file(stack_file(env)))["agents"]
    return {pool["poolName"] for pool in agents["pools"] if pool["arch"] == "amd64"}


@pytest.mark.parametrize("name", ["pr-ephemeral.yml", "reaper.yml"])
def test_pipelines_run_on_the_kits_x86_pool_with_the_state_settings_in_env(name):
    pipeline = _load(name)
    for job in pipeline["jobs"]:
        assert job["pool"]["name"] in _x86_pools("qa")
        assert "Agent.OSArchitecture -equals X64" in job["pool"]["demands"]
    for step in _steps(pipeline):
        if "./kit " in step.get("inputs", {}).get("inlineScript", ""):
            assert step["env"]["PULUMI_CONFIG_PASSPHRASE"] == "$(pulumiConfigPassphrase)"
            assert "PULUMI_CONFIG_PASSPHRASE" not in step["inputs"]["inlineScript"]
            assert step["inputs"]["azureSubscription"] == "${{ parameters.azureServiceConnection }}"


@pytest.mark.parametrize("name", ["pr-ephemeral.yml", "reaper.yml"])
def test_every_kit_step_maps_what_the_refreshed_federated_login_needs(name):
    """Issue 20.2: the kit's federated login (and kubelogin azurepipelines) need the job's access token, which a
    step sees only when mapped, and the provider's default credential needs the subscription."""
    for step in _steps(_load(name)):
        if "./kit " in step.get("inputs", {}).get("inlineScript", ""):
            assert step["task"] == "AzureCLI@2"  # it exports AZURESUBSCRIPTION_* for its service connection
            assert step["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"
            assert step["env"]["ARM_SUBSCRIPTION_ID"] == "$(azureSubscriptionId)"
            assert "idToken" not in step["inputs"]["inlineScript"] and "addSpnToEnvironment" not in step["inputs"]


def test_the_pr_pipeline_creates_smoke_tests_and_always_reaps_its_stack():
    pipeline = _load("pr-ephemeral.yml")
    calls = _kit_calls(pipeline)
    assert [name for name, _ in calls] == ["stack.ephemeral", "preview", "destroy"]
    created, smoke, reaped = (args for _, args in calls)
    assert created["from"] in available_envs() and created["json"] is True
    parse_ttl(created["ttl"])
    assert NAME.match(created["name"])
    assert smoke["env"] == reaped["env"] == SAMPLE_VARIABLES["ephemeralStack"] and smoke["expect-no-changes"]
    assert reaped["remove"] is True and reaped["force"] is False and reaped["confirm"] == ""
    reap_step = _steps(pipeline)[-1]
    assert reap_step["condition"].startswith("and(always(),")
    assert pipeline["trigger"] == "none" and "main" in pipeline["pr"]["branches"]["include"]


def test_the_reaper_is_scheduled_and_only_reaps():
    pipeline = _load("reaper.yml")
    (schedule,) = pipeline["schedules"]
    assert len(schedule["cron"].split()) == 5 and schedule["always"] is True
    calls = _kit_calls(pipeline)
    assert [name for name, _ in calls] == ["stack.reap", "stack.reap"]
    assert sorted(args["dry-run"] for _, args in calls) == [False, True]
    assert all(1 <= args["parallel"] <= 32 for _, args in calls)
    assert pipeline["trigger"] == pipeline["pr"] == "none"
