"""The pipeline templates, compiled as Azure Pipelines would, checked against the kit's own configuration."""

import pytest
import yaml

from agents.podspec import capabilities, demands
from infra.devops.names import devops_names, pool_arches
from tests.devops.devops_plan import KIT_ENVS, ROOT, kit_settings
from tests.devops.pipeline_model import TemplateError, compile_pipeline, include, jobs, steps

PIPELINE = ROOT / "pipelines" / "azure-pipelines.yml"
TEMPLATES = ROOT / "pipelines" / "templates"
CONNECTION_INPUTS = ("azureSubscription", "azureSubscriptionEndpoint", "containerRegistry", "kubernetesServiceEndpoint")
STAGE_ENV = {"QA": "qa", "UAT": "uat", "Production": "prod"}


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return compile_pipeline(PIPELINE, {"modelVersion": "1.4.2"})


@pytest.fixture(scope="module")
def kit() -> dict:
    """env -> (DevOps names, agent pool name -> arch, DevOps settings)."""
    result = {}
    for env in KIT_ENVS:
        devops, agents = kit_settings(env)
        result[env] = (devops_names(devops, env), pool_arches(agents), devops)
    return result


def stage_of(pipeline: dict, name: str) -> dict:
    return next(stage for stage in pipeline["stages"] if stage["stage"] == name)


def depends_on(stage: dict) -> list[str]:
    value = stage.get("dependsOn", [])
    return [value] if isinstance(value, str) else value


def test_stages_form_build_qa_uat_production(pipeline):
    order = {stage["stage"]: depends_on(stage) for stage in pipeline["stages"]}
    assert order["Build"] == [] and order["QA"] == ["Build"]
    assert order["UAT"] == ["QA"] and order["Production"] == ["UAT"]
    # Besides the next environment, only the environment's own edge site follows it.
    assert {stage for stage, deps in order.items() if "QA" in deps} == {"UAT", "Edge_qa"}
    assert {stage for stage, deps in order.items() if "UAT" in deps} == {"Production", "Edge_uat"}
    assert {stage for stage, deps in order.items() if "Production" in deps} == {"Edge_production"}


def test_each_aks_stage_deploys_to_its_gated_environment(pipeline, kit):
    for stage_name, env in STAGE_ENV.items():
        names, _, devops = kit[env]
        [deployment] = [job for job in stage_of(pipeline, stage_name)["jobs"] if "deployment" in job]
        assert deployment["environment"] == names.environment
        assert (devops.approval is not None) == (env != "qa"), "UAT and production wait for an approval"


def test_every_pool_and_demand_is_one_the_kit_creates(pipeline, kit):
    served = {pool: arch for _, pools, _ in kit.values() for pool, arch in pools.items()}
    used = set()
    for stage, job in jobs(pipeline):
        pool = job["pool"]
        assert pool["name"] in served, f"{stage}: pool {pool['name']} is not an agent pool of the kit"
        arch = served[pool["name"]]
        wanted = [f"{name} -equals {value}" for name, value in capabilities(arch).items()]
        assert pool["demands"] == wanted, f"{stage}: demands of {pool['name']}"
        assert ",".join(pool["demands"]) == demands(arch), "the ScaledJob of the pool demands the same"
        used.add(arch)
    assert used == {"amd64", "arm64", "arm"}, "images are built for x86, arm64 and armv7"


def test_each_stage_runs_on_its_own_environments_pools(pipeline, kit):
    for stage_name, env in {**STAGE_ENV, "Build": "qa", "Edge_qa": "qa", "Edge_uat": "uat"}.items():
        _, pools, _ = kit[env]
        for job in stage_of(pipeline, stage_name)["jobs"]:
            if not job["pool"]["name"].endswith("-arm"):  # armv7 builds run where armv7 agents are
                assert job["pool"]["name"] in pools, f"{stage_name} runs on {job['pool']['name']}"


def test_every_service_connection_and_variable_group_exists_in_its_environment(pipeline, kit):
    for stage in pipeline["stages"]:
        [group] = [v["group"] for v in stage["variables"] if "group" in v]
        env = next(e for e, (names, _, _) in kit.items() if names.platform_variable_group == group)
        names = kit[env][0]
        for job in stage["jobs"]:
            for step in steps(job):
                for key in CONNECTION_INPUTS:
                    if key in step.get("inputs", {}):
                        assert step["inputs"][key] in names.service_connections(), \
                            f"{stage['stage']}: {step['inputs'][key]} is not a connection of {env}"


def test_every_edge_site_of_the_kit_has_a_stage_exposed_through_metallb(pipeline, kit):
    for env, (names, _, devops) in kit.items():
        for site in devops.edge_sites:
            stage = stage_of(pipeline, f"Edge_{site.name}")
            env_stage = next(s for s, e in STAGE_ENV.items() if e == env)
            assert depends_on(stage) == [env_stage]
            [job] = stage["jobs"]
            scripts = [s["script"] for s in steps(job) if "script" in s]
            assert any("manifests/edge-service.yaml" in script for script in scripts)
            assert any(s.get("inputs", {}).get("kubernetesServiceEndpoint") == names.edge_connections[site.name]
                       for s in steps(job))
            assert (ROOT / "edge_hosts" / "sites" / f"{site.name}.yaml").exists(), "an edge inventory backs the site"
    service = yaml.safe_load((ROOT / "pipelines" / "manifests" / "edge-service.yaml").read_text())
    assert service["kind"] == "Service" and service["spec"]["type"] == "LoadBalancer"


def test_the_model_version_is_a_required_parameter_that_reaches_every_deployment(pipeline):
    declared = yaml.safe_load(PIPELINE.read_text())["parameters"]
    [model] = [p for p in declared if p["name"] == "modelVersion"]
    assert "default" not in model and model["type"] == "string"
    with pytest.raises(TemplateError, match="modelVersion is required"):
        compile_pipeline(PIPELINE, {})
    check = next(job for _, job in jobs(pipeline) if job.get("job") == "CheckModelVersion")
    assert [s["env"]["MODEL_VERSION"] for s in steps(check) if "script" in s] == ["1.4.2"]
    builds = [job for _, job in jobs(pipeline) if job.get("job", "").startswith("Build_")]
    assert builds and all(job["dependsOn"] == "CheckModelVersion" for job in builds)
    for stage, job in jobs(pipeline):
        for step in steps(job):
            if "MODEL_VERSION" in step.get("env", {}):
                assert step["env"]["MODEL_VERSION"] == "1.4.2", stage


def test_no_template_pins_latest_or_interpolates_the_model_version_into_shell():
    for path in [PIPELINE, *TEMPLATES.glob("*.yml")]:
        document = yaml.safe_load(path.read_text())
        for where, value in _values(document):
            assert not str(value).lower().endswith("latest"), f"{path.name}{where}: moving version {value}"
        for where, script in _values(document, keys=("script", "inlineScript")):
            assert "parameters.modelVersion" not in script, f"{path.name}{where}: pass it through env instead"


def test_the_manifest_job_joins_every_built_architecture(pipeline):
    built = {job["job"].removeprefix("Build_") for _, job in jobs(pipeline) if job.get("job", "").startswith("Build_")}
    manifest = next(job for _, job in jobs(pipeline) if job.get("job") == "Manifest")
    assert manifest["dependsOn"] == [f"Build_{arch}" for arch in ("amd64", "arm64", "arm")]
    assert {f"Build_{arch}" for arch in built} == set(manifest["dependsOn"])


def test_promotion_only_after_qa(pipeline):
    for stage_name, promoted in (("QA", False), ("UAT", True), ("Production", True)):
        tasks = [s.get("task") for job in stage_of(pipeline, stage_name)["jobs"] for s in steps(job)]
        assert ("AzureCLI@2" in tasks) == promoted, stage_name


def test_templates_refuse_unknown_or_missing_parameters():
    with pytest.raises(TemplateError, match="unknown parameter"):
        include(TEMPLATES / "check-model-version.yml", {"modelVersion": "1", "pool": "p", "osArchitecture": "X64",
                                                        "demands": []})
    with pytest.raises(TemplateError, match="osArchitecture is required"):
        include(TEMPLATES / "check-model-version.yml", {"modelVersion": "1", "pool": "p"})
    with pytest.raises(TemplateError, match="promote is not a boolean"):
        include(TEMPLATES / "deploy-aks.yml", {"environment": "qa", "azureConnection": "azure-qa", "pool": "p",
                                               "osArchitecture": "X64", "modelVersion": "1", "promote": "yes"})


def _values(node, path: str = "", keys: tuple[str, ...] | None = None):
    """(key path, scalar) of every scalar, or of those under the given keys."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(value, (dict, list)) and (keys is None or key in keys):
                yield f"{path}.{key}", value
            else:
                yield from _values(value, f"{path}.{key}", keys)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, (dict, list)):
                yield from _values(item, f"{path}[{index}]", keys)
            elif keys is None:
                yield f"{path}[{index}]", item
