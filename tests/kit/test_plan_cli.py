"""./kit plan as a reviewer uses it: the same inputs give the same bytes, --diff names what changed, graph.svg."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from infra.stack.stack_config import ROOT, available_envs
from tests.kit.helpers import kit, too_wide

ENVS = available_envs()


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def first_plans(tmp_path_factory):
    """One `./kit plan` per env, made on first use: (out directory, the run's stdout, the files it wrote)."""
    made = {}

    def plan(env: str) -> tuple[Path, str, dict[str, bytes]]:
        if env not in made:
            out = tmp_path_factory.mktemp(f"plan-{env}")
            done = kit("plan", "--env", env, "--out", str(out))
            assert done.returncode == 0, done.stderr
            made[env] = out, done.stdout, files_of(out / env)
        return made[env]
    return plan


@pytest.mark.parametrize("env", ENVS)
def test_two_plans_of_the_same_env_are_byte_identical(env, first_plans):
    out, stdout, before = first_plans(env)
    second = kit("plan", "--env", env, "--out", str(out))
    assert second.returncode == 0, second.stderr
    assert second.stdout == stdout
    assert {"plan.json", "graph.dot", "graph.svg"} <= set(before)
    assert files_of(out / env) == before
    outputs = json.loads(before["plan.json"])["outputs"]
    assert list(outputs) == sorted(outputs) and list(outputs["subnetIds"]) == sorted(outputs["subnetIds"])


def stack_dir(tmp_path: Path, edit=None) -> Path:
    """A project directory with a copy of Pulumi.dev.yaml, edited by `edit(config)` when given."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    if edit:
        edit(document["config"])
    (project / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    return project


def test_diff_shows_the_changed_resource_and_property(tmp_path):
    out = tmp_path / "out"
    assert kit("plan", "--env", "dev", "--out", str(out), "-p", str(stack_dir(tmp_path))).returncode == 0
    old = tmp_path / "old-plan.json"
    shutil.copy(out / "dev" / "plan.json", old)

    def bigger_system_pool(config):
        config["mlops-edge-kit:cluster"]["systemPool"]["maxCount"] = 5
    done = kit("plan", "--env", "dev", "--out", str(out), "-p", str(stack_dir(tmp_path, bigger_system_pool)),
               "--diff", str(old))
    assert done.returncode == 0, done.stderr
    assert " ".join(done.stdout.split()).startswith(f"changes against {old}: 1 changed, 0 added, 0 removed ")
    lines = done.stdout.splitlines()
    resource = next(i for i, line in enumerate(lines) if line.startswith("~ "))
    assert lines[resource].startswith("~ azure-native:containerservice:ManagedCluster ")
    change = " ".join(line.strip() for line in lines[resource + 1:] if line.startswith("    "))
    assert change == "inputs.agentPoolProfiles[0].maxCount: 3 -> 5"
    assert not any(line.startswith(("~ ", "+ ", "- ")) for line in lines[resource + 1:])  # nothing else changed
    assert not too_wide(done.stdout)
    assert json.loads((out / "dev" / "plan.json").read_text()) != json.loads(old.read_text())


def test_diff_against_the_same_plan_says_nothing_changed(tmp_path):
    out = tmp_path / "out"
    assert kit("plan", "--env", "qa", "--out", str(out)).returncode == 0
    done = kit("plan", "--env", "qa", "--out", str(out), "--diff", str(out / "qa" / "plan.json"))
    assert done.returncode == 0, done.stderr
    assert " ".join(done.stdout.split()).startswith(f"changes against {out / 'qa' / 'plan.json'}: 0 changed, 0 added, "
                                                    "0 removed wrote ")


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"), ("directory", "is a directory"), ("{not json", "not JSON (line 1, column 2"),
    ('{"stack": "dev"}', "not a plan.json of ./kit plan"),
])
def test_a_bad_diff_file_is_bad_input_and_writes_nothing(tmp_path, content, problem):
    old = tmp_path / "old.json"
    if content == "directory":
        old.mkdir()
    elif content is not None:
        old.write_text(content)
    done = kit("plan", "--env", "dev", "--out", str(tmp_path / "out"), "--diff", str(old))
    assert done.returncode == 2
    assert f"plan: --diff {old}: {problem}" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_graph_svg_draws_components_as_clusters(first_plans):
    _, _, files = first_plans("prod")
    svg, dot = files["graph.svg"].decode(), files["graph.dot"].decode()
    assert svg.count('class="cluster"') >= 10 and "AksCluster aks" in svg
    assert "compound=true" in dot and dot.count("subgraph cluster_") == svg.count('class="cluster"')


def test_without_graphviz_the_plan_says_how_to_get_the_picture(tmp_path):
    bare = tmp_path / "bin"  # a PATH with python and sh but no dot
    bare.mkdir()
    for tool in ("sh", "dirname", "id"):
        (bare / tool).symlink_to(shutil.which(tool))
    done = kit("plan", "--env", "dev", "--out", str(tmp_path / "out"), PATH=str(bare))
    assert done.returncode == 0, done.stderr
    assert "\nno graph.svg: Graphviz's dot is not installed (apt-get install graphviz)\n" in done.stdout
    assert not (tmp_path / "out" / "dev" / "graph.svg").exists() and (tmp_path / "out" / "dev" / "graph.dot").exists()


@pytest.mark.parametrize("env", ENVS)
def test_the_plan_tree_fits_80_columns(env, first_plans):
    _, stdout, _ = first_plans(env)
    assert not too_wide(stdout), too_wide(stdout)
    assert "subnetIds.aksNodes = …/snet-aks-nodes" in stdout and "roleDefinitionId=…/" in stdout


def test_diff_lists_removed_resources(tmp_path):
    out = tmp_path / "out"
    assert kit("plan", "--env", "dev", "--out", str(out), "-p", str(stack_dir(tmp_path))).returncode == 0
    old = tmp_path / "old-plan.json"
    shutil.copy(out / "dev" / "plan.json", old)

    def detached(config):
        config["mlops-edge-kit:ml"] = {**config.get("mlops-edge-kit:ml", {}), "attachAks": False}
    done = kit("plan", "--env", "dev", "--out", str(out), "-p", str(stack_dir(tmp_path, detached)), "--diff", str(old))
    assert done.returncode == 0, done.stderr
    removed = [line for line in done.stdout.splitlines() if line.startswith("- ")]
    assert any(line.startswith("- azure-native:kubernetesconfiguration:Extension ") for line in removed), removed
    assert any(line.startswith("- azure-native:machinelearningservices:Compute ") for line in removed), removed
    header = " ".join(done.stdout.split())
    assert f", 0 added, {len(removed)} removed" in header


def test_diff_against_another_stacks_plan_says_so_and_writes_nothing(first_plans, tmp_path):
    qa_out, _, _ = first_plans("qa")
    old = qa_out / "qa" / "plan.json"
    done = kit("plan", "--env", "dev", "--out", str(tmp_path / "out"), "--diff", str(old))
    assert done.returncode == 2, done.stdout + done.stderr
    assert " ".join(done.stderr.split()) == (
        f"plan: --diff {old}: a plan of stack 'qa', not of 'dev': their resources' URNs all differ, so every resource "
        "would show as removed and added; give an earlier plan of dev (./kit plan --env dev writes "
        "out/dev/plan.json)")
    assert not (tmp_path / "out").exists()


def test_diff_tells_the_stack_of_a_plan_without_its_stack_field(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"resources": [{"urn": "urn:pulumi:prod::mlops-edge-kit::pulumi:pulumi:Stack::x"}]}))
    done = kit("plan", "--env", "dev", "--out", str(tmp_path / "out"), "--diff", str(old))
    assert done.returncode == 2 and "a plan of stack 'prod', not of 'dev'" in " ".join(done.stderr.split())
