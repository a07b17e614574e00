"""Paths given on the command line resolve against the caller's directory (./kit itself runs from the checkout's
root): -o/--out, --diff, --site, --kubeconfig, --models, each typed relative from a scratch directory."""
import io
import json
import os
from contextlib import redirect_stdout

from common.cli import KitProgram
from common.paths import PATH_OPTIONS, SITE_OPTION
from infra.stack.stack_config import ROOT
from tests.kit.helpers import kit
from tests.kit.test_no_traceback import site_file

NOT_PATHS = {"env", "backend", "raw"}  # their help names a file: a stack's, a backend URL (file://), a mirror


def test_plan_out_and_diff_relative_to_the_caller(tmp_path):
    first = kit("plan", "--env", "dev", "-o", "first", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "first" / "dev" / "plan.json").read_text())
    assert not (ROOT / "first").exists()
    again = kit("plan", "--env", "dev", "--diff", "first/dev/plan.json", "--out", "second", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "changes against" in again.stdout and (tmp_path / "second" / "dev" / "plan.json").is_file()


def test_site_and_kubeconfig_relative_to_the_caller(tmp_path):
    site_file(tmp_path)
    below = tmp_path / "below"
    (below / "kubeconfig-dir").mkdir(parents=True)
    found = kit("edge.reset", "--site", "../site.yaml", cwd=below)  # no terminal: the site was read, then refused
    assert found.returncode == 2 and found.stderr.startswith("reset: stdin is not a terminal"), found.stderr
    directory = kit("edge.kubeconfig", "--site", "../site.yaml", "--kubeconfig", "kubeconfig-dir", cwd=below)
    assert directory.returncode == 2
    assert f"--kubeconfig {below / 'kubeconfig-dir'}: " in directory.stderr, directory.stderr


def test_fleet_models_and_out_relative_to_the_caller(tmp_path):
    assert kit("fleet.sample-model", "--env", "qa", "--models", "models", cwd=tmp_path).returncode == 0
    done = kit("fleet.render", "--env", "qa", "--models", "models", "--out", "rendered", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models").is_dir() and any((tmp_path / "rendered").iterdir())


def test_a_site_name_stays_a_name(tmp_path):
    done = kit("edge.reset", "--site", "nosuchsite", cwd=tmp_path)
    assert done.returncode == 2 and f"{ROOT / 'edge_hosts' / 'sites' / 'nosuchsite.yaml'}: no such" in done.stderr


def test_every_option_naming_a_file_or_directory_resolves_against_the_caller():
    program = KitProgram(binary="./kit", binary_names=["kit"], name="mlops-edge-kit")
    with redirect_stdout(io.StringIO()):
        program.run(["./kit", "--list"], exit=False)
    pathlike = {a.names[0] for context in program.parser.contexts.values() for a in context.args.values()
                if any(word in (a.help or "") for word in ("file", "directory", "folder", "path", ".json"))}
    assert pathlike - NOT_PATHS == PATH_OPTIONS | {SITE_OPTION}


def test_a_value_typed_relative_is_made_absolute_once(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CALLER_CWD", str(tmp_path))
    program = KitProgram(binary="./kit", binary_names=["kit"], name="mlops-edge-kit")
    program.execute = lambda: None  # parse only
    program.run(["./kit", "plan", "--env", "dev", "-o", "x", "--diff", "/abs/plan.json", "-p", "~/stacks"],
                exit=False)
    given = {a.names[0]: a.value for a in program.tasks[0].args.values()}
    assert given["out"] == str(tmp_path / "x") and given["diff"] == "/abs/plan.json"
    assert given["project-dir"] == os.path.expanduser("~/stacks") and given["env"] == "dev"
    monkeypatch.setenv("KIT_CALLER_CWD", str(tmp_path))
    program.run(["./kit", "fleet.status", "--env", "qa", "--statuses", "registry", "--root", "seeds"], exit=False)
    given = {a.names[0]: a.value for a in program.tasks[0].args.values()}
    assert given["statuses"] == "registry" and given["root"] == str(tmp_path / "seeds")  # a word stays a word
    assert "KIT_CALLER_CWD" not in os.environ  # taken: a process the task starts does not inherit it
