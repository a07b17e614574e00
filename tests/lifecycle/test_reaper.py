"""stack.reap: expired ephemeral stacks destroyed and removed exactly once; nothing else ever touched."""
import json
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from invoke import Exit

from infra.lifecycle import tasks
from infra.lifecycle.backend import resolve_backend
from infra.lifecycle.reaper import GONE, _destroy_and_remove
from infra.lifecycle.workspace import open_workspace

EXPIRED = timedelta(hours=2)  # created two hours ago with a one-hour ttl
FRESH = timedelta(0)


@pytest.fixture
def fleet(project):
    """qa and prod up, two expired ephemeral stacks and one that has not expired yet."""
    project.run(tasks.up, env="qa")
    project.run(tasks.up, env="prod")
    return {"expired": [project.ephemeral("pr-1", age=EXPIRED), project.ephemeral("pr-2", age=EXPIRED)],
            "fresh": project.ephemeral("pr-3", age=FRESH)}


def _reap(project, capsys, **options) -> dict[str, dict]:
    project.run(tasks.reap, json=True, **options)
    return {row["stack"]: row for row in json.loads(capsys.readouterr().out)}


def test_expired_stacks_are_reaped_exactly_once(project, fleet, capsys):
    first = _reap(project, capsys)
    for name in fleet["expired"]:
        assert first[name]["action"] == "reaped"
        assert name not in project.stacks() and not (project.root / f"Pulumi.{name}.yaml").exists()
    second = _reap(project, capsys)
    assert not set(fleet["expired"]) & set(second)
    assert sorted(project.operations("destroy")) == sorted(fleet["expired"])


def test_stacks_that_are_not_ephemeral_or_not_expired_are_never_touched(project, fleet, capsys):
    outcome = _reap(project, capsys)
    assert outcome["qa"]["action"] == outcome["prod"]["action"] == "skipped"
    assert outcome["qa"]["detail"] == "not tagged ephemeral=true"
    assert outcome[fleet["fresh"]]["action"] == "kept"
    assert outcome[fleet["fresh"]]["detail"].startswith(("expires in 0h59m", "expires in 1h00m"))
    assert {"qa", "prod", fleet["fresh"]} <= set(project.stacks())
    destroyed_or_removed = [c for c in project.calls() if c[0] == "destroy" or c[:2] == ["stack", "rm"]]
    assert all(not {"qa", "prod", fleet["fresh"]} & set(call) for call in destroyed_or_removed)
    assert project.state("prod")["resources"] == 42


def test_a_failing_destroy_is_reported_kept_and_retried_at_the_next_reap(project, fleet, capsys):
    stuck, other = fleet["expired"]
    marker = project.fail("destroy", stuck)
    with pytest.raises(Exit) as caught:
        project.run(tasks.reap, json=True)
    assert caught.value.code == 1 and stuck in caught.value.message
    outcome = {row["stack"]: row for row in json.loads(capsys.readouterr().out)}
    assert outcome[stuck]["action"] == "failed" and "still in use" in outcome[stuck]["detail"]
    assert outcome[other]["action"] == "reaped"
    assert stuck in project.stacks() and (project.root / f"Pulumi.{stuck}.yaml").exists()
    marker.unlink()
    assert _reap(project, capsys)[stuck]["action"] == "reaped"
    assert project.operations("destroy").count(stuck) == 2 and stuck not in project.stacks()


def test_a_dry_run_reaps_nothing_and_needs_no_azure_login(project, fleet, capsys):
    project.az_login.unlink()
    az_calls = len(project.az_calls())
    outcome = _reap(project, capsys, dry_run=True)
    assert {outcome[name]["action"] for name in fleet["expired"]} == {"would reap"}
    assert project.operations("destroy") == [] and set(fleet["expired"]) <= set(project.stacks())
    assert len(project.az_calls()) == az_calls


@pytest.mark.parametrize("lifecycle", [{"protected": True}, {"protected": False, "ephemeral": False},
                                       {"ephemeral": False, "expiresAt": "2020-01-01T00:00:00Z"}, None])
def test_a_stack_tagged_ephemeral_whose_file_says_otherwise_is_left_alone(project, fleet, capsys, lifecycle):
    name = fleet["expired"][0]
    path = project.root / f"Pulumi.{name}.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["mlops-edge-kit:lifecycle"] = lifecycle
    if lifecycle is None:  # no lifecycle key at all: not ephemeral by default
        del document["config"]["mlops-edge-kit:lifecycle"]
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(Exit) as caught:
        project.run(tasks.reap, json=True)
    assert caught.value.code == 1
    row = {r["stack"]: r for r in json.loads(capsys.readouterr().out)}[name]
    assert row["action"] == "failed" and "says it is not; left alone" in row["detail"]
    assert name in project.stacks() and name not in project.operations("destroy")


def test_an_unreadable_expiry_is_reported_not_reaped(project, capsys):
    name = project.ephemeral("pr-4", age=EXPIRED)
    open_workspace(project.root, resolve_backend()).set_tag(name, "expires-at", "tomorrow")
    with pytest.raises(Exit) as caught:
        project.run(tasks.reap, json=True)
    assert caught.value.code == 1
    row = json.loads(capsys.readouterr().out)[0]
    assert row["action"] == "failed" and "not an ISO 8601 time" in row["detail"]
    assert project.operations("destroy") == []


def test_a_stack_already_gone_is_fine_and_its_leftover_file_goes(project):
    leftover = project.root / "Pulumi.pr-6-0a0b0c.yaml"
    leftover.write_text("config: {}\n")
    workspace = open_workspace(project.root, resolve_backend())
    outcome = _destroy_and_remove(workspace, project.root, "pr-6-0a0b0c", "2020-01-01T00:00:00Z")
    assert outcome.action == GONE and not leftover.exists()


def test_the_table_names_every_stack_and_what_happened(project, fleet, capsys):
    project.run(tasks.reap)
    table = capsys.readouterr().out
    for name in [*fleet["expired"], fleet["fresh"], "qa", "prod"]:
        assert name in table
    assert table.count("reaped") == 2 and "not tagged ephemeral=true" in table


def test_bad_parallelism_is_refused(project):
    error = project.exit_of(tasks.reap, parallel=0)
    assert error.code == 2 and "--parallel: 0 is outside 1 .. 32" in error.message and project.calls() == []


def test_a_reaped_stack_expired_by_its_tag(project, capsys):
    name = project.ephemeral("pr-7", age=FRESH)
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    open_workspace(project.root, resolve_backend()).set_tag(name, "expires-at", past)
    assert _reap(project, capsys)[name]["action"] == "reaped"


@pytest.mark.parametrize("value", ["True", "TRUE", "yes", "1", "true ", " true", "false"])
def test_only_a_tag_of_exactly_true_counts(project, capsys, value):
    name = project.ephemeral("pr-8", age=EXPIRED)
    open_workspace(project.root, resolve_backend()).set_tag(name, "ephemeral", value)
    row = _reap(project, capsys)[name]
    assert row["action"] == "skipped" and row["detail"] == "not tagged ephemeral=true"
    assert name in project.stacks() and project.operations("destroy") == []


def test_a_stack_without_the_ephemeral_tag_is_never_reaped_even_when_expired(project, capsys):
    name = project.ephemeral("pr-9", age=EXPIRED)
    open_workspace(project.root, resolve_backend()).remove_tag(name, "ephemeral")
    assert _reap(project, capsys)[name]["action"] == "skipped"
    assert name in project.stacks() and project.operations("destroy") == []
