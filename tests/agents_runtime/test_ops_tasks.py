"""./kit agents.status and agents.cleanup, run for real against the REST stand-in."""
import os
import subprocess
from pathlib import Path

import pytest

from tests.agents_runtime.conftest import GOOD_TOKEN

REPO = Path(__file__).resolve().parents[2]


def kit(*args, token=GOOD_TOKEN, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("AZP_TOKEN", "AZURE_DEVOPS_EXT_PAT", "AZP_URL")}
    environ.update({"COLUMNS": "200", **({"AZP_TOKEN": token} if token else {}), **env})
    return subprocess.run([str(REPO / "kit"), *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def pool(standin):
    state = standin.state
    state.page_size = 3  # several pages
    state.add_agent(7, "old-offline-1", age_hours=5)
    state.add_agent(7, "old-offline-2", age_hours=30)
    state.add_agent(7, "fresh-offline", age_hours=0.5)
    state.add_agent(7, "online-idle", status="online", age_hours=50)
    state.add_agent(7, "online-busy", status="online", busy=True, age_hours=50)
    state.add_agent(7, "offline-busy", busy=True, age_hours=50)
    state.add_agent(7, "placeholder-edge-arm64", age_hours=500)
    return standin


def _names(standin):
    return sorted(a["name"] for a in standin.state.agents[7].values())


def test_status_lists_every_agent_across_pages(pool):
    result = kit("agents.status", "--pool", "edge-arm64", "--org", pool.org_url)
    assert result.returncode == 0, result.stderr
    for name in _names(pool):
        assert name in result.stdout
    assert "2 online, 5 offline, 2 busy" in result.stdout
    assert GOOD_TOKEN not in result.stdout + result.stderr


def test_cleanup_dry_run_deletes_nothing(pool):
    before = _names(pool)
    result = kit("agents.cleanup", "--pool", "edge-arm64", "--org", pool.org_url, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "2 agents would be deleted" in result.stdout
    assert _names(pool) == before
    assert not [r for r in pool.state.requests if r[0] == "DELETE"]


def test_cleanup_deletes_only_old_idle_offline_non_placeholder_agents(pool):
    result = kit("agents.cleanup", "--pool", "edge-arm64", "--older-than", "2h", AZP_URL=pool.org_url)
    assert result.returncode == 0, result.stderr
    assert _names(pool) == ["fresh-offline", "offline-busy", "online-busy", "online-idle",
                            "placeholder-edge-arm64"]
    assert "deleted 2 agents, kept 5" in result.stdout


def test_cleanup_threshold_is_honoured(pool):
    kit("agents.cleanup", "--pool", "edge-arm64", "--older-than", "1d", AZP_URL=pool.org_url)
    assert "old-offline-1" in _names(pool) and "old-offline-2" not in _names(pool)


@pytest.mark.parametrize("setup, expected", [
    ("expired", "expired"),
    ("unscoped", "Agent Pools (Read & manage)"),
    ("missing-pool", "'nope' not found"),
    ("bad-org", "bad organization URL"),
])
def test_errors_are_clear_exit_2_and_never_show_the_token(pool, setup, expected):
    token, org, pool_name = "tok-" + setup, pool.org_url, "edge-arm64"
    if setup == "expired":
        pool.state.expired_tokens.add(token)
    elif setup == "unscoped":
        pool.state.unscoped_tokens.add(token)
    else:
        token = GOOD_TOKEN
        pool_name = "nope" if setup == "missing-pool" else pool_name
        org = org.replace("contoso", "fabrikam") if setup == "bad-org" else org
    result = kit("agents.cleanup", "--pool", pool_name, "--org", org, token=token)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and token not in result.stdout + result.stderr


def test_missing_token_and_arguments_are_reported_together(standin):
    result = kit("agents.cleanup", "--older-than", "soon", token="")
    assert result.returncode == 2
    assert "--org: not given" in result.stderr and "--pool: not given" in result.stderr
    assert "--older-than: 'soon' is not a duration" in result.stderr


def test_token_can_come_from_a_file(pool, tmp_path):
    token_file = tmp_path / "pat"
    token_file.write_text(GOOD_TOKEN + "\n")
    result = kit("agents.status", "--pool", "edge-arm64", "--org", pool.org_url,
                 "--token-file", str(token_file), token="")
    assert result.returncode == 0, result.stderr
    missing = kit("agents.status", "--pool", "edge-arm64", "--org", pool.org_url,
                  "--token-file", str(tmp_path / "absent"), token="")
    assert missing.returncode == 2 and "not a readable file" in missing.stderr


def test_offline_age_counts_from_the_status_change_when_given():
    from datetime import datetime, timedelta, timezone

    from agents.azdo import Agent
    from agents.ops import decide

    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    agent = Agent.model_validate({"id": 1, "name": "a", "status": "offline",
                                  "createdOn": "2025-01-01T00:00:00Z",
                                  "statusChangedOn": "2026-01-01T23:30:00Z"})
    assert decide(agent, timedelta(hours=2), now).delete is False
    assert decide(agent, timedelta(minutes=10), now).delete is True
