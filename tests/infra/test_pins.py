"""The committed end-of-support table and the plan's offline warnings for pins past it."""
from datetime import date

import yaml

from common import pins
from infra.stack import settings_rules
from infra.offline.plan import record_env
from infra.stack.stack_config import ROOT, load_stack, project_values, read_stack_file, stack_file
from tests.infra.conftest import ENVS

SUPPORT_DAY = date(2026, 12, 1)  # every pin must be supported on this day (issue 8)


def test_every_row_is_complete_with_its_source():
    rows = pins.load_table()  # rows may record versions already out of support, so the plan can warn about them
    assert rows
    for row in rows:
        assert row.source.startswith("https://") and row.component and row.version, row


def test_a_pin_past_its_end_of_support_warns_with_the_source():
    table = [pins.PinRow("aks-kubernetes", "1.35", date(2027, 3, 31), "https://example.test/calendar")]
    assert pins.warnings({"aks-kubernetes": "1.35.4"}, date(2027, 3, 31), table) == []
    (note,) = pins.warnings({"aks-kubernetes": "1.35.4"}, date(2027, 4, 1), table)
    assert "aks-kubernetes 1.35.4 is past its end of support (2027-03-31" in note
    assert "https://example.test/calendar" in note


def test_a_pin_without_a_row_warns():
    table = [pins.PinRow("aks-kubernetes", "1.35", date(2027, 3, 31), "https://example.test")]
    assert pins.warnings({"aks-kubernetes": "1.3"}, SUPPORT_DAY, table) == [
        "pin aks-kubernetes 1.3 has no end-of-support row in common/pins.yaml"]


def test_a_malformed_row_names_the_file_and_row(tmp_path):
    path = tmp_path / "pins.yaml"
    path.write_text(yaml.safe_dump({"pins": [{"component": "x", "version": "1", "endOfSupport": "soon",
                                              "source": "https://x", "checked": date(2026, 12, 7)}]}))
    try:
        pins.load_table(path)
    except ValueError as err:
        assert "pins.yaml: pins[0].endOfSupport" in str(err)
    else:
        raise AssertionError("a non-date endOfSupport was accepted")


def test_every_stack_pins_a_kubernetes_version_supported_on_the_support_day():
    for env in ENVS:
        stack = load_stack(project_values(read_stack_file(stack_file(env))), source=f"Pulumi.{env}.yaml", env=env,
                           organization="organization")
        assert [n for n in settings_rules.warnings(stack.settings, SUPPORT_DAY) if n.startswith("pin ")] == [], env


def test_the_plan_warns_offline_for_an_unsupported_kubernetes_version(stack_root, tmp_path):
    def old_version(config):
        config["mlops-edge-kit:cluster"]["kubernetesVersion"] = "1.33"
    recording = record_env(stack_root(old_version), root=tmp_path)
    assert "pin aks-kubernetes 1.33 has no end-of-support row in common/pins.yaml" in recording.notes
    assert (ROOT / "common" / "pins.yaml").exists()
