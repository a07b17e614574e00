"""What `./kit plan` writes and prints: plan.json, graph.dot, schema-valid manifests, no secrets, policy checks."""
import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from infra.offline import policies
from infra.offline.artifacts import write_plan
from infra.offline.mocks import kubeconfig
from infra.stack.stack_config import ROOT
from tests.infra.conftest import ENVS

K8S_VERSION = "1.35"  # the stacks' cluster.kubernetesVersion
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledJob"), ("keda.sh/v1alpha1", "ScaledObject"),
                ("keda.sh/v1alpha1", "TriggerAuthentication")}  # checked against the KEDA CRDs in tests/agents_k8s


@pytest.fixture(scope="module")
def planned(recordings, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("out")
    for env, rec in recordings.items():
        write_plan(rec, out / env)
    return {env: out / env for env in recordings}


@pytest.mark.parametrize("env", ENVS)
def test_plan_json_lists_every_resource_with_wire_inputs(planned, recordings, env):
    document = json.loads((planned[env] / "plan.json").read_text())
    assert len(document["resources"]) == len(recordings[env].resources)
    cluster = next(r for r in document["resources"] if r["type"] == "azure-native:containerservice:ManagedCluster")
    assert set(cluster) >= {"urn", "type", "name", "parent", "provider", "dependencies", "inputs"}
    assert "disableLocalAccounts" in cluster["inputs"] and "agentPoolProfiles" in cluster["inputs"]
    assert document["outputs"]["kubeconfig"] == "[secret]"


@pytest.mark.parametrize("env", ENVS)
def test_graph_has_dependency_and_parent_edges(planned, recordings, env):
    dot = (planned[env] / "graph.dot").read_text()
    compute = next(c for c in recordings[env].of_type("azure-native:machinelearningservices:Compute")
                   if c.inputs["properties"]["computeType"] == "Kubernetes")
    extension = recordings[env].one("azure-native:kubernetesconfiguration:Extension")
    assert dot.startswith("digraph plan {")
    assert f'"{extension.urn}" -> "{compute.urn}";' in dot
    assert clusters_of(dot)[compute.urn] == compute.parent  # a component is a cluster around its children


def clusters_of(dot: str) -> dict[str, str]:
    """Node id -> the URN of the component whose cluster holds it (its anchor node is named by that URN)."""
    anchors: list[str] = []
    owner = {}
    for line in (raw.strip() for raw in dot.splitlines()):
        if line.startswith("subgraph "):
            anchors.append("")
        elif line == "}" and anchors:
            anchors.pop()
        elif "[shape=point" in line:
            anchors[-1] = line.split('" [', 1)[0].strip('"')
        elif line.startswith('"') and "->" not in line and anchors:
            owner[line.split('" [', 1)[0].strip('"')] = anchors[-1]
    return owner


@pytest.mark.parametrize("env", ENVS)
def test_manifests_are_schema_valid(planned, env):
    files = sorted((planned[env] / "manifests").rglob("*.yaml"))
    clusters = {p.parent.name for p in files}
    assert "aks-agents-k8s" in clusters
    assert any(c.startswith("edge-") for c in clusters) is (env != "dev")
    kinds = set()
    for path in files:
        obj = yaml.safe_load(path.read_text())
        kinds.add((obj["apiVersion"], obj["kind"]))
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            assert obj["metadata"]["name"] and obj["spec"], path.name
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert {("v1", "Namespace"), ("v1", "Secret"), ("keda.sh/v1alpha1", "ScaledJob")} <= kinds


@pytest.mark.parametrize("env", ENVS)
def test_no_secret_value_reaches_the_plan_files(planned, env):
    secret = kubeconfig(f"aks-mlk-{env}", "x").split("certificate-authority-data: ")[1].split()[0]
    for path in planned[env].rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert secret not in text and "offline-plan-secret-placeholder" not in text, path


def test_policies_catch_insecure_resources(recordings):
    rec = recordings["prod"]
    registry = rec.one("azure-native:containerregistry:Registry")
    vault = rec.one("azure-native:keyvault:Vault")
    storage = rec.one("azure-native:storage:StorageAccount")
    cluster = rec.one("azure-native:containerservice:ManagedCluster")
    saved = [(r, json.dumps(r.inputs), r.protect) for r in (registry, vault, storage, cluster)]
    try:
        registry.inputs["adminUserEnabled"] = True
        vault.inputs["properties"].pop("enablePurgeProtection")
        storage.inputs["allowBlobPublicAccess"] = True
        storage.protect = False
        cluster.inputs["tags"].pop("owner")
        cluster.inputs["disableLocalAccounts"] = False
        attached = "\n".join(policies.violations(rec, protected=True))
        cluster.inputs["resourceName"] = "other"  # local accounts are tolerated only for the cluster AzureML attaches
        problems = "\n".join(policies.violations(rec, protected=True))
    finally:
        for resource, inputs, protect in saved:
            resource.inputs, resource.protect = json.loads(inputs), protect
    for expected in ("registry admin user must be disabled", "purge protection must be on",
                     "public blob access must be off", "protect must be True", "AKS local accounts must be disabled",
                     "missing tags: owner"):
        assert expected in problems
    assert "AKS local accounts must be disabled" not in attached
    assert policies.violations(rec, protected=True) == []


def test_cli_prints_the_tree_and_writes_the_files(tmp_path):
    result = subprocess.run([sys.executable, "-m", "invoke", "plan", "--env", "prod", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    for expected in ("mlops:infra:AksCluster", "vmSize=Standard_D8pds_v5", "addressPrefix=10.40.0.0/20",
                     "sku.name=Premium", "(protected)", "kubeconfig = [secret]"):
        assert expected in result.stdout, expected
    assert sorted(p.name for p in (tmp_path / "prod").iterdir()) == ["graph.dot", "graph.svg", "manifests", "plan.json"]
