"""./kit itself: command-line mistakes are bad input (exit 2, no traceback); tasks are listed with their help."""
import subprocess

import pytest

from infra.stack_config import ROOT


def kit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "kit"), *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("args, message", [
    (("nosuchtask",), "No idea what 'nosuchtask' is"),
    (("edge.plan",), "'edge.plan' did not receive required positional arguments: 'site'"),
    (("edge.bootstrap", "--site", "qa", "--parallel", "many"), "invalid option value"),
    (("plan",), "--env is required (one of: dev, prod, qa, uat)"),
])
def test_command_line_mistakes_exit_2_without_traceback(args, message):
    done = kit(*args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_list_shows_every_area():
    done = kit("--list")
    assert done.returncode == 0
    for task in ("plan", "test", "up", "destroy", "edge.bootstrap", "lab.up", "agents.cleanup", "stack.reap"):
        assert f"  {task} " in done.stdout or f"  {task}\n" in done.stdout, task
