"""Tab completion of ./kit in bash: the script invoke prints, run the way bash runs it for `./kit` (bash finds a
compspec for the word after the last slash: GNU Bash manual, 8.6 Programmable Completion), completes task names
and the typed task's own options."""
import subprocess

import pytest

from infra.stack.stack_config import ROOT
from tests.kit.helpers import kit


def completions(*words: str, cwd=ROOT) -> list[str]:
    """COMPREPLY of the kit's bash completion for the command line `words` (the last one being completed)."""
    script = kit("--print-completion-script", "bash").stdout
    quoted = " ".join(f"'{w}'" for w in words)
    shell = f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; " \
            f"_complete_kit '{words[0]}' '{words[-1]}' '{words[-2]}'; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("typed", ["./kit", str(ROOT / "kit")])
def test_a_tasks_options_complete_however_the_kit_is_typed(typed):
    options = completions(typed, "edge.bootstrap", "--")
    assert {"--site", "--kubeconfig", "--json", "--parallel", "--hosts"} <= set(options)
    assert "--pty" not in options and "--list" not in options  # the task's options, not invoke's core ones
    assert completions(typed, "edge.reset", "--y") == ["--yes"]


def test_task_names_complete_from_another_directory(tmp_path):
    assert completions(str(ROOT / "kit"), "fleet.re", cwd=tmp_path) == ["fleet.receive", "fleet.release",
                                                                         "fleet.render", "fleet.resume"]


def test_the_script_registers_for_kit():
    assert "complete -F _complete_kit -o default kit" in kit("--print-completion-script", "bash").stdout
