"""The scanner (checkov, tests/agents_k8s/scanner.py) finds nothing unexplained in what the kit renders and builds.

Every Kubernetes object the agents' stack would apply, on the AKS cluster and an edge site, and the agent
image's Dockerfile: no failed check; a skipped check only where a manifest carries it with a written reason.
"""
import re
from pathlib import Path

import pytest
import yaml

from agents.buildkit import SCANNER_SKIPS
from agents.settings import AgentsSettings
from tests.agents_k8s.scanner import scan

DOCKERFILE = Path(__file__).resolve().parents[2] / "agents" / "image" / "Dockerfile"


def finding(check: dict) -> str:
    return f"{check['check_id']} {check['resource']}: {check['check_name']}"


@pytest.fixture(scope="module")
def kubernetes_report(plan, tmp_path_factory) -> dict:
    objects = [r.inputs for r in plan.resources if r.type.startswith("kubernetes:") and "helm.sh" not in r.type]
    folder = tmp_path_factory.mktemp("rendered")
    (folder / "agents.yaml").write_text(yaml.safe_dump_all(objects))
    return scan(folder / "agents.yaml", "kubernetes")


def test_rendered_objects_have_no_failed_check(kubernetes_report):
    assert kubernetes_report["summary"]["resource_count"] >= 20, "the scan must see the rendered objects"
    assert [finding(c) for c in kubernetes_report["results"]["failed_checks"]] == []


def test_each_skip_is_a_builder_need_with_its_reason(kubernetes_report):
    skipped = kubernetes_report["results"]["skipped_checks"]
    assert skipped, "the builders' documented needs are skipped with their reasons"
    for check in skipped:
        assert check["resource"].startswith("Deployment.azp-buildkit.buildkitd-"), finding(check)
        reason = check["check_result"]["suppress_comment"]
        assert reason == SCANNER_SKIPS[check["check_id"]], finding(check)
        assert len(reason.split()) >= 8, f"{finding(check)}: the reason says why"
    per_builder = {}
    for check in skipped:
        per_builder.setdefault(check["resource"], set()).add(check["check_id"])
    assert set(map(frozenset, per_builder.values())) == {frozenset(SCANNER_SKIPS)}


def test_agent_dockerfile_has_no_finding_and_no_skip():
    report = scan(DOCKERFILE, "dockerfile")
    assert [finding(c) for c in report["results"]["failed_checks"]] == []
    assert report["results"].get("skipped_checks", []) == []


def test_image_builds_buildctl_from_the_daemons_pin():
    pinned = AgentsSettings.model_fields["buildkit_image"].default
    assert re.search(r"^FROM (\S+) AS buildkit$", DOCKERFILE.read_text(), re.M)[1] == pinned
