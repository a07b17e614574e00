"""stack.ephemeral: a base env's config under a unique name, tagged, then up; bad input refused up front."""
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from infra.lifecycle import tasks
from infra.lifecycle.ephemeral import derive_config, parse_ttl
from infra.lifecycle.stack_files import validated_stack
from infra.stack.stack_config import read_stack_file

SUFFIXED = re.compile(r"^pr-123-[0-9a-f]{6}$")


def _created(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_an_ephemeral_stack_is_created_tagged_and_up(project, capsys):
    before = datetime.now(timezone.utc)
    project.run(tasks.ephemeral, name="pr-123", ttl="4h", from_="qa", json=True)
    created = _created(capsys)
    name = created["stack"]
    assert SUFFIXED.match(name) and created["base"] == "qa" and created["changes"] == "create 42"
    expires = datetime.fromisoformat(created["expiresAt"])
    assert before + timedelta(hours=4) - timedelta(seconds=1) <= expires <= before + timedelta(hours=4, seconds=5)
    tags = project.state(name)["tags"]
    assert tags["ephemeral"] == "true" and tags["expires-at"] == created["expiresAt"] and tags["base-env"] == "qa"
    assert project.operations("up") == [name]
    lifecycle = read_stack_file(project.root / f"Pulumi.{name}.yaml")["mlops-edge-kit:lifecycle"]
    assert lifecycle == {"protected": False, "ephemeral": True, "expiresAt": created["expiresAt"]}


def test_the_copy_keeps_the_base_settings_but_not_its_agents(project, capsys):
    project.run(tasks.ephemeral, name="pr-123", ttl="2h", json=True)
    name = _created(capsys)["stack"]
    copied = read_stack_file(project.root / f"Pulumi.{name}.yaml")
    base = read_stack_file(project.root / "Pulumi.qa.yaml")
    same = ("serviceCidr", "dnsServiceIp", "podCidr", "privateNetworking")
    assert {k: copied["mlops-edge-kit:network"][k] for k in same} == {k: base["mlops-edge-kit:network"][k] for k in same}
    assert copied["mlops-edge-kit:network"]["peerings"][0]["vnet"] == "vnet-mlk-qa"  # its own block, peered with qa
    assert copied["mlops-edge-kit:cluster"] == base["mlops-edge-kit:cluster"]
    assert base["mlops-edge-kit:agents"].get("enabled", True) is True
    assert copied["mlops-edge-kit:agents"] == {"enabled": False}


def test_two_ephemeral_stacks_from_one_base_share_no_azure_names(project, capsys):
    project.run(tasks.ephemeral, name="pr-123", ttl="1h", json=True)
    first = _created(capsys)["stack"]
    project.run(tasks.ephemeral, name="pr-123", ttl="1h", json=True)
    second = _created(capsys)["stack"]
    assert first != second
    names = [vars(validated_stack(project.root, env).names) for env in (first, second, "qa")]
    for field in names[0]:
        values = [n[field] for n in names]
        assert len(set(values)) == 3, f"{field} overlaps: {values}"


def test_secrets_explicit_names_and_the_devops_slice_of_the_base_are_not_copied():
    base = {"mlops-edge-kit:azpToken": {"secure": "v1:abc"}, "mlops-edge-kit:names": {"cluster": "aks-qa-main"},
            "mlops-edge-kit:namePrefix": "mlk", "azure-native:location": "westeurope",
            "mlops-edge-kit:devops": {"enabled": True, "project": "ml"}}
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    config = derive_config(base, expires)
    assert config == {"mlops-edge-kit:namePrefix": "mlk", "azure-native:location": "westeurope",
                      "mlops-edge-kit:devops": {"enabled": False},
                      "mlops-edge-kit:lifecycle": {"protected": False, "ephemeral": True,
                                                   "expiresAt": "2030-01-02T03:04:05Z"}}
    assert base["mlops-edge-kit:names"] == {"cluster": "aks-qa-main"}


def test_bad_name_ttl_and_base_are_all_reported_and_nothing_is_written(project):
    files = sorted(p.name for p in project.root.iterdir())
    error = project.exit_of(tasks.ephemeral, name="PR_123", ttl="4 hours", from_="staging")
    assert error.code == 2
    assert "--name: 'PR_123' must be 2-18 lowercase letters" in error.message
    assert "--ttl: '4 hours' is not a duration" in error.message
    assert "--from: Pulumi.staging.yaml: no such stack file" in error.message
    assert sorted(p.name for p in project.root.iterdir()) == files and project.calls() == []


def test_a_base_env_with_invalid_settings_is_refused(project):
    path = project.root / "Pulumi.qa.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["mlops-edge-kit:cluster"]["x86Pool"]["vmSize"] = "Standard_D8pds_v5"
    path.write_text(yaml.safe_dump(document))
    error = project.exit_of(tasks.ephemeral, name="pr-7", ttl="1h")
    assert error.code == 2 and "--from: Pulumi.qa.yaml: config.mlops-edge-kit:cluster.x86Pool.vmSize" in error.message
    assert project.calls() == [] and not list(project.root.glob("Pulumi.pr-7-*.yaml"))


@pytest.mark.parametrize(("ttl", "expected"), [("15m", timedelta(minutes=15)), ("4h", timedelta(hours=4)),
                                               ("7d", timedelta(days=7)), ("90m", timedelta(minutes=90))])
def test_ttl_parses(ttl, expected):
    assert parse_ttl(ttl) == expected


@pytest.mark.parametrize("ttl", ["10m", "8d", "0h", "4", "h", "-1h", "1.5h"])
def test_ttl_outside_bounds_or_malformed_is_refused(ttl):
    with pytest.raises(ValueError, match=re.escape(repr(ttl))):
        parse_ttl(ttl)


def test_a_failed_up_leaves_the_tagged_stack_for_the_reaper(project, monkeypatch):
    monkeypatch.setattr("secrets.token_hex", lambda n: "c0ffee")
    project.backend.mkdir(parents=True)
    project.fail("up", "pr-5-c0ffee")
    error = project.exit_of(tasks.ephemeral, name="pr-5", ttl="1h")
    assert error.code == 1 and "stack.ephemeral pr-5-c0ffee" in error.message and "reaper" in error.message
    assert project.state("pr-5-c0ffee")["tags"]["ephemeral"] == "true"
    assert (project.root / "Pulumi.pr-5-c0ffee.yaml").exists()


def test_an_ephemeral_stack_is_destroyed_without_force_and_removed(project, capsys):
    project.run(tasks.ephemeral, name="pr-8", ttl="1h", json=True)
    name = _created(capsys)["stack"]
    project.run(tasks.destroy, env=name, remove=True)
    assert project.operations("destroy") == [name]
    assert name not in project.stacks() and not (project.root / f"Pulumi.{name}.yaml").exists()
