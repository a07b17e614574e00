"""Every pipeline and template, validated against the real Azure Pipelines schema (service-schema.json)."""
from pathlib import Path

import pytest
import yaml

from tests.devops.devops_plan import ROOT
from tests.devops.pipeline_model import compile_pipeline, expand, include
from tests.devops.pipeline_schema import SCHEMA, problems

PIPELINES = sorted((ROOT / "pipelines").glob("*.yml"))
TEMPLATES = sorted((ROOT / "pipelines" / "templates").glob("*.yml"))
ARGUMENTS = {"azure-pipelines.yml": {"modelVersion": "1.4.2"}}


def template_calls(path: Path) -> list[tuple[Path, dict]]:
    """(template, arguments) of every template reference in a pipeline, its expressions resolved."""
    document = yaml.safe_load(path.read_text())
    context = {"parameters": {p["name"]: p.get("default") for p in document.get("parameters", [])}
               | ARGUMENTS.get(path.name, {})}
    return [(path.parent / job["template"], expand(job.get("parameters", {}), context, path.parent))
            for stage in document.get("stages", []) for job in stage["jobs"] if "template" in job]


def test_the_schema_is_the_upstream_one():
    assert SCHEMA.exists(), "../shared/upstream/azure-pipelines/service-schema.json is missing"


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_each_pipeline_file_is_valid_as_written(path):
    assert problems(yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_each_pipeline_is_valid_with_its_templates_included(path):
    assert problems(compile_pipeline(path, ARGUMENTS.get(path.name, {}))) == []


def test_every_template_is_used_and_valid_as_a_jobs_fragment_for_each_call():
    calls = [call for path in PIPELINES for call in template_calls(path)]
    assert {template for template, _ in calls} == set(TEMPLATES), "every template is used by a pipeline"
    for template, arguments in calls:
        declared = yaml.safe_load(template.read_text())["parameters"]
        fragment = {"parameters": declared, "jobs": include(template, arguments)}
        assert problems(fragment, "jobsTemplate") == [], f"{template.name} with {arguments}"


def test_the_deploy_template_reads_key_vault_secrets_with_a_valid_step():
    arguments = {"environment": "qa", "azureConnection": "azure-qa", "pool": "mlops-x86-qa", "osArchitecture": "X64",
                 "modelVersion": "1.4.2", "promote": False, "keyVaultSecrets": ["smoke-test-api-key", "db-password"]}
    template = ROOT / "pipelines" / "templates" / "deploy-aks.yml"
    jobs = include(template, arguments)
    fragment = {"parameters": yaml.safe_load(template.read_text())["parameters"], "jobs": jobs}
    assert problems(fragment, "jobsTemplate") == []
    [step] = [s for s in jobs[0]["strategy"]["runOnce"]["deploy"]["steps"] if s.get("task") == "AzureKeyVault@2"]
    assert step["inputs"] == {"azureSubscription": "azure-qa", "KeyVaultName": "$(keyVaultName)",
                              "SecretsFilter": "smoke-test-api-key,db-password", "RunAsPreJob": False}
    assert not [s for s in include(template, {**arguments, "keyVaultSecrets": []})[0]["strategy"]["runOnce"][
        "deploy"]["steps"] if s.get("task") == "AzureKeyVault@2"]


@pytest.mark.parametrize("mistake, where", [
    (lambda job: job["steps"][1]["inputs"].update(scriptTyp="bash"), "jobs.0.steps.1"),
    (lambda job: job.update(timeoutInMinute=5), "jobs.0"),
    (lambda job: job["steps"][1].update(task="AzureCLI@9"), "jobs.0.steps.1"),
    (lambda job: job["steps"][1].update(condtion="always()"), "jobs.0.steps.1"),
])
def test_the_schema_catches_misspelt_keys_unknown_tasks_and_inputs(mistake, where):
    document = yaml.safe_load((ROOT / "pipelines" / "reaper.yml").read_text())
    mistake(document["jobs"][0])
    found = problems(document)
    assert found and any(p.startswith(where) for p in found), found
