"""Every pin records where its version was read and on which day; the Pulumi SDK is the CLI's release; KEDA
outside its tested Kubernetes range is a plan warning."""
import re
import tomllib
from datetime import date

import pytest
import yaml

from agents import build
from agents.settings import KEDA_TESTED_KUBERNETES, AgentsSettings, keda_untested
from common import pins
from infra.stack import settings_rules
from infra.stack.stack_config import ROOT, load_stack, project_values, read_stack_file, stack_file


def test_every_row_of_the_table_records_its_source_and_the_day_it_was_checked():
    for row in pins.load_table():
        assert row.source.startswith("https://") and isinstance(row.checked, date), row


def test_a_row_without_checked_or_with_a_bare_source_is_refused_naming_each(tmp_path):
    path = tmp_path / "pins.yaml"
    path.write_text(yaml.safe_dump({"pins": [
        {"component": "k3s", "version": "1.37", "endOfSupport": date(2027, 10, 28), "source": "https://x.test"},
        {"component": "k3s", "version": "1.36", "endOfSupport": date(2027, 6, 28), "source": "kubernetes.io",
         "checked": "yesterday"}]}))
    with pytest.raises(ValueError) as refused:
        pins.load_table(path)
    message = str(refused.value)
    assert "pins.yaml: pins[0]: needs component, version, endOfSupport, source, checked" in message
    assert "pins.yaml: pins[1].checked: must be a date" in message
    assert "pins.yaml: pins[1].source: 'kubernetes.io' must be the https:// page" in message


def test_each_image_pin_records_its_release_page_and_check_day():
    lock = build.read_lock()
    assert build.missing_evidence(lock) == []
    versions = [key for key in lock if key.endswith("_VERSION")]
    assert len(versions) == 5 and all(lock[key.replace("_VERSION", "_CHECKED")] == "2026-12-07" for key in versions)
    assert lock["KUBELOGIN_VERSION"] == "0.2.19" and lock["KUBELOGIN_SOURCE"].endswith("/v0.2.19")


def test_a_lock_without_evidence_is_refused_before_the_build():
    lock = {key: value for key, value in build.read_lock().items() if key != "KUBELOGIN_CHECKED"}
    lock["AGENT_SOURCE"] = "github.com/microsoft/azure-pipelines-agent"
    assert build.missing_evidence(lock) == ["AGENT_SOURCE", "KUBELOGIN_CHECKED"]
    with pytest.raises(build.BuildError, match="lacks AGENT_SOURCE, KUBELOGIN_CHECKED"):
        build.require_evidence(lock)


def test_lock_agent_records_the_release_page_and_the_day(tmp_path):
    copy = tmp_path / "agent.lock"
    copy.write_text(build.LOCK_FILE.read_text())
    build.write_lock("4.280.1", {}, copy, checked=date(2027, 1, 5))
    lock = build.read_lock(copy)
    assert lock["AGENT_SOURCE"] == "https://github.com/microsoft/azure-pipelines-agent/releases/tag/v4.280.1"
    assert lock["AGENT_CHECKED"] == "2027-01-05"


@pytest.mark.parametrize("field", ["keda_version", "buildkit_image"])
def test_the_keda_chart_and_buildkit_record_their_source_and_check_day(field):
    extra = AgentsSettings.model_fields[field].json_schema_extra
    assert extra["source"].startswith("https://") and date.fromisoformat(extra["checked"]) == date(2026, 12, 7)
    version = re.search(r"v?(\d+\.\d+\.\d+)", AgentsSettings.model_fields[field].default)[1]
    assert extra["source"].endswith(f"/v{version}")


def test_the_pulumi_sdk_is_pinned_to_the_cli_the_image_carries():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pulumi,) = [d for d in dependencies if re.match(r"pulumi\b(?!-)", d)]
    assert pulumi == f"pulumi=={build.read_lock()['PULUMI_VERSION']}"


def test_keda_outside_its_tested_range_warns_with_the_range():
    assert KEDA_TESTED_KUBERNETES["2.20"] == ("1.33", "1.35")
    (note,) = keda_untested("2.20.2", {"AKS": "1.35.4", "edge site uat": "1.37"})
    assert "KEDA 2.20.2 on edge site uat (Kubernetes 1.37): KEDA 2.20 is tested on Kubernetes 1.33-1.35" in note
    assert keda_untested("2.20.2", {"AKS": "1.33"}) == []
    (unknown,) = keda_untested("2.99.0", {"AKS": "1.35"})
    assert "tested Kubernetes range is not recorded" in unknown


def test_the_plan_warns_for_the_edge_sites_keda():
    stack = load_stack(project_values(read_stack_file(stack_file("uat"))), source="Pulumi.uat.yaml", env="uat",
                       organization="organization")
    notes = [n for n in settings_rules.warnings(stack.settings, date(2026, 12, 7)) if n.startswith("KEDA ")]
    sites = [site.name for site in stack.settings.agents.edge_sites if site.install_keda]
    assert sites and len(notes) == len(sites)
    assert all("(Kubernetes 1.37): KEDA 2.20 is tested on Kubernetes 1.33-1.35" in n for n in notes)
