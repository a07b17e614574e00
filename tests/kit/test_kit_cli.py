"""./kit itself: command-line mistakes are bad input said in the kit's words (exit 2, no traceback); tasks are
listed with their help; help fits 80 columns and shows defaults; -p is --project-dir on every task."""
import subprocess
import sys

import pytest

from infra.stack.stack_config import ROOT
from tests.kit.helpers import kit, too_wide


@pytest.mark.parametrize("args, message", [
    (("nosuchtask",), "kit: no task named 'nosuchtask'; `./kit --list` shows every task"),
    (("plna", "--env", "dev"), "kit: no task named 'plna' (did you mean 'plan'?)"),
    (("plan", "--nev", "dev"), "kit: plan: no option --nev (did you mean '--env'?); `./kit --help plan` lists them"),
    (("edge.plan",), "kit: edge.plan: --site is required (site name"),
    (("edge.bootstrap", "--site", "qa", "--parallel", "many"),
     "kit: edge.bootstrap: --parallel takes a whole number, got 'many'"),
    (("plan", "--env"), "kit: plan: --env needs a value: environment (a Pulumi.<env>.yaml"),
    (("lab.up", "--servers"), "kit: lab.up: --servers needs a whole number: how many of them are k3s servers"),
    (("plan",), "plan: --env is required (one of: dev, prod, qa, uat)"),
])
def test_command_line_mistakes_exit_2_in_the_kits_words(args, message):
    done = kit(*args)
    assert done.returncode == 2
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "<Argument" not in done.stderr and "invalid literal" not in done.stderr


def test_list_shows_every_area():
    done = kit("--list")
    assert done.returncode == 0
    for task in ("plan", "test", "up", "destroy", "edge.bootstrap", "lab.up", "agents.cleanup", "stack.reap"):
        assert f"  {task} " in done.stdout or f"  {task}\n" in done.stdout, task
    assert not too_wide(done.stdout)


def test_kit_without_arguments_lists_the_tasks():
    done = kit()
    assert done.returncode == 0
    assert done.stdout.startswith("Available tasks:") and "edge.bootstrap" in done.stdout
    assert "--core-opts" not in done.stdout and "Run `./kit --help TASK`" in done.stdout


def task_names() -> list[str]:
    listed = kit("--list").stdout.splitlines()
    return [line.split()[0] for line in listed if line.startswith("  ") and not line.startswith("   ")]


def test_every_tasks_help_fits_80_columns_and_p_is_project_dir():
    names = task_names()
    assert len(names) >= 20
    for name in names:
        done = kit("--help", name)
        assert done.returncode == 0, name
        assert not too_wide(done.stdout), (name, too_wide(done.stdout))
        if "--project-dir" in done.stdout:
            assert "-p STRING, --project-dir=STRING" in done.stdout, name
        else:
            assert "-p " not in done.stdout, name


def test_help_after_the_task_name_is_the_tasks_help():
    done = kit("edge.plan", "--help")  # the task has a positional argument that must not swallow --help
    assert done.returncode == 0
    assert done.stdout == kit("--help", "edge.plan").stdout
    assert done.stdout.startswith("Usage: ./kit edge.plan")


def test_lab_up_help_shows_the_defaults():
    done = kit("--help", "lab.up")
    assert "(default: 3)" in done.stdout and "(default: 1)" in done.stdout and "(default: out/lab)" in done.stdout


def test_version():
    done = kit("--version")
    assert done.returncode == 0 and done.stdout.startswith("mlops-edge-kit ")


def test_list_and_the_edge_and_lab_tasks_never_import_pulumi():
    """What ./kit loads for --list, an edge task or a lab task (importing every module they use; an edge task
    with --json draws nothing, so it needs no rich either)."""
    probe = """
import sys
sys.argv = ["./kit", "--list"]
from common.cli import KitProgram
try:
    KitProgram(binary="./kit", name="mlops-edge-kit").run()
except SystemExit:
    pass
listed = set(sys.modules)
import edge_hosts.bootstrap.runner, edge_hosts.bootstrap.plan, edge_hosts.operations.status, edge_hosts.operations.reset, edge_hosts.artifacts.bundle, edge_hosts.access.hostkeys
import lab.lifecycle.lab, lab.lifecycle.packages
heavy = ("pulumi", "pulumi_azure_native", "pulumi_kubernetes", "grpc")
print(sorted(m for m in listed if m.split(".")[0] in heavy + ("pydantic", "rich", "paramiko", "cryptography")))
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy + ("rich",)))  # rich: only to draw a table
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    at_list, with_edge_and_lab = done.stdout.splitlines()[-2:]
    assert at_list == "[]" and with_edge_and_lab == "[]"


def test_bash_completion_completes_dot_slash_kit():
    script = kit("--print-completion-script", "bash").stdout
    assert "complete -F _complete_kit -o default kit" in script  # bash tries `kit` for ./kit (after the last /)
    shell = f"{script}\nCOMP_WORDS=(./kit edge.bo); COMP_CWORD=1; _complete_kit ./kit edge.bo ./kit; " \
            'echo "${COMPREPLY[@]}"'
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.split() == ["edge.bootstrap"], done.stderr


def test_the_first_run_says_what_it_installs_and_keeps_stdout_for_the_task(tmp_path):
    """./kit itself in a scratch root whose .venv python stands in for pip and the kit (no network needed)."""
    (tmp_path / "kit").write_bytes((ROOT / "kit").read_bytes())
    (tmp_path / "kit").chmod(0o755)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\nif [ "$2" = pip ]; then echo "Collecting invoke (pip progress)"; exit 0; fi\n'
                      'echo "task output: $*"\n')
    python.chmod(0o755)
    first = subprocess.run([str(tmp_path / "kit"), "--list"], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "task output: -m common.cli --list\n"
    assert "kit: first run (or pyproject.toml changed): installing the kit" in first.stderr
    assert "Collecting invoke (pip progress)" in first.stderr
    again = subprocess.run([str(tmp_path / "kit"), "--list"], capture_output=True, text=True, timeout=60)
    assert again.stderr == "" and again.stdout == first.stdout


def test_a_closed_pipe_is_no_traceback():
    # `true` exits before the kit has started, so the kit writes into a pipe nobody reads (EPIPE)
    done = subprocess.run(["bash", "-c", f"{ROOT / 'kit'} --help edge.bundle | true; echo ${{PIPESTATUS[0]}}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout == "1\n" and done.stderr == ""
