"""A key written twice in one YAML mapping is refused wherever the kit reads YAML (PyYAML alone keeps the last
one without a word): exit 2 naming the file, the key and both lines, every duplicate at once, nothing written."""
import ast
import shutil
from pathlib import Path

import pytest
import yaml

from agents.edge_placement import read_inventory
from common import yamlio
from infra.stack.stack_config import ROOT
from tests.kit.helpers import kit
from tests.kit.test_bad_inventory import SITE

PRODUCT = ("agents", "common", "edge_hosts", "fleet", "infra", "lab")
# YAML the kit parses from upstream or Azure, where a duplicate is no user's mistake: left to PyYAML.
NOT_USER_WRITTEN = {"edge_hosts/steps/metallb.py",  # the checksum-verified MetalLB release manifest
                    "infra/access/kubelogin.py", "infra/access/kube_ready.py"}  # kubeconfigs AKS returns


def test_every_duplicate_is_named_with_its_line_and_the_first_one():
    text = "a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\na: 4\n"
    with pytest.raises(yamlio.DuplicateKeyError) as caught:
        yamlio.load(text, "f.yaml")
    assert str(caught.value) == ("duplicate key 'x' in \"f.yaml\", line 5, column 3 (first at line 3); "
                                 "duplicate key 'a' in \"f.yaml\", line 6, column 1 (first at line 1)")
    assert yaml.safe_load(text) == {"a": 4, "b": {"x": 3, "y": 2}}  # what the kit read before


def test_the_same_key_in_two_mappings_and_a_merge_override_are_fine():
    text = "base: &b {k: 1, j: 2}\nother:\n  <<: *b\n  k: 3\nlist: [{k: 1}, {k: 2}]\n"
    assert yamlio.load(text) == {"base": {"k": 1, "j": 2}, "other": {"k": 3, "j": 2}, "list": [{"k": 1}, {"k": 2}]}


def test_keys_equal_once_read_are_duplicates():
    with pytest.raises(yamlio.DuplicateKeyError, match="duplicate key '1' .* line 2"):
        yamlio.load("1: a\n0x1: b\n")


def test_load_all_keeps_empty_documents_and_counts_lines_across_documents():
    assert yamlio.load_all("a: 1\n---\n---\nb: 2\n") == [{"a": 1}, None, {"b": 2}]
    with pytest.raises(yamlio.DuplicateKeyError, match=r"duplicate key 'b' in \"m.yaml\", line 4, column 1 "
                                                       r"\(first at line 3\)"):
        yamlio.load_all("a: 1\n---\nb: 2\nb: 3\n", "m.yaml")


def test_syntax_errors_name_the_file_and_quote_the_line_with_a_caret():
    with pytest.raises(yaml.YAMLError) as caught:
        yamlio.load("a: 1\nb: [1, 2\nc: 3\n", "f.yaml")
    assert 'in "f.yaml", line 2, column 4:\n    b: [1, 2\n       ^' in str(caught.value), str(caught.value)


def test_the_loader_is_libyaml_when_pyyaml_has_it():
    assert yaml.__with_libyaml__ and issubclass(yamlio.StrictLoader, yaml.CSafeLoader)


def refused(*args: str) -> str:
    done = kit(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def test_a_stack_file_with_a_duplicated_name_prefix(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    text = (ROOT / "Pulumi.dev.yaml").read_text()
    line = text.splitlines().index("  mlops-edge-kit:namePrefix: mlk") + 1
    (project / "Pulumi.dev.yaml").write_text(text + "  mlops-edge-kit:namePrefix: other\n")
    stderr = refused("plan", "--env", "dev", "-p", str(project), "--out", str(tmp_path / "out"))
    assert (f"Pulumi.dev.yaml: invalid YAML: duplicate key 'mlops-edge-kit:namePrefix' in \"Pulumi.dev.yaml\", "
            f"line {len(text.splitlines()) + 1}, column 3 (first at line {line})") in stderr
    assert not (tmp_path / "out").exists()


def test_an_inventory_with_a_duplicated_key(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(SITE, sort_keys=False) + "nodeSubnet: 10.0.0.0/24\n")
    stderr = refused("edge.plan", "--site", str(path))
    assert f"{path}: not valid YAML: duplicate key 'nodeSubnet' in \"{path}\", line" in stderr, stderr


def test_the_agents_placement_check_reads_inventories_strictly(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("hosts: []\nhosts: []\n")
    assert read_inventory(path) == f"is not valid YAML (duplicate key 'hosts' in \"{path}\", line 2, column 1 " \
                                   "(first at line 1))"


def seeds(tmp_path: Path) -> Path:
    """A copy of the fleet's seeds (no code) to edit."""
    root = tmp_path / "fleet"
    shutil.copytree(ROOT / "fleet", root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return root


def test_fleet_seeds_with_duplicated_keys_are_all_reported(tmp_path):
    root = seeds(tmp_path)
    (root / "fleet.yaml").write_text((root / "fleet.yaml").read_text() + "model: {name: other, version: '1'}\n")
    site = root / "sites" / "qa-line" / "site.yaml"
    site.write_text(site.read_text() + "ring: standard\n")
    base = root / "bases" / "app.yaml"
    base.write_text(base.read_text() + "---\nkind: ConfigMap\nmetadata: {name: a}\nkind: Secret\n")
    stderr = refused("fleet.render", "--env", "qa", "--root", str(root), "--out", str(tmp_path / "out"))
    assert "fleet/fleet.yaml: cannot read: duplicate key 'model' in \"fleet/fleet.yaml\", line" in stderr
    assert "fleet/sites/qa-line/site.yaml: cannot read: duplicate key 'ring'" in stderr
    last = len(base.read_text().splitlines())
    assert f"duplicate key 'kind' in \"{base}\", line {last}, column 1 (first at line {last - 2})" in stderr
    assert not (tmp_path / "out").exists()


def test_a_rollout_with_a_duplicated_wave_key(tmp_path):
    root = seeds(tmp_path)
    rollout = root / "rollout.yaml"
    rollout.write_text(rollout.read_text().replace("{name: all, failureBudget: 0}",
                                                   "{name: all, failureBudget: 0, failureBudget: 1}"))
    stderr = refused("fleet.status", "--env", "qa", "--root", str(root), "--statuses", str(tmp_path / "st"))
    assert f"{rollout}: cannot read: duplicate key 'failureBudget' in \"{rollout}\", line" in stderr, stderr


def direct_loads(path: Path) -> list[int]:
    """Lines calling yaml.safe_load, yaml.safe_load_all, yaml.load or yaml.load_all."""
    return [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml"
            and node.attr in ("safe_load", "safe_load_all", "load", "load_all", "full_load", "unsafe_load")]


def test_the_product_reads_yaml_only_through_common_yamlio():
    bypass = {f"{path.relative_to(ROOT)}:{line}" for package in PRODUCT for path in (ROOT / package).rglob("*.py")
              if "standins" not in path.parts and path.relative_to(ROOT).as_posix() != "common/yamlio.py"
              and path.relative_to(ROOT).as_posix() not in NOT_USER_WRITTEN for line in direct_loads(path)}
    assert bypass == set()
    assert all(direct_loads(ROOT / name) for name in NOT_USER_WRITTEN)  # the allowance is still needed
