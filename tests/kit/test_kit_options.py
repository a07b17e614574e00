"""One meaning per short option across every task (-h is always help), and a switch given a value said in the
kit's words."""
import io
from collections import defaultdict
from contextlib import redirect_stdout

import pytest

from common.cli import KitProgram
from tests.kit.helpers import kit


def every_short_flag() -> dict[str, set[str]]:
    """Short flag -> the long options it stands for, over invoke's core options and every task's."""
    program = KitProgram(binary="./kit", binary_names=["kit"], name="mlops-edge-kit")
    with redirect_stdout(io.StringIO()):
        program.run(["./kit", "--list"], exit=False)
    meanings = defaultdict(set)
    arguments = [("core", a) for a in program.core_args()] + [
        (name, a) for name in program.collection.task_names for a in program.collection[name].get_arguments()]
    assert len({name for name, _ in arguments}) > 30
    for _, argument in arguments:
        for short in (n for n in argument.names if len(n) == 1):
            meanings[short].add(argument.names[0])
    return meanings


def test_every_short_flag_means_one_option_on_every_task():
    meanings = every_short_flag()
    assert {short: longs for short, longs in meanings.items() if len(longs) > 1} == {}
    assert meanings["h"] == {"help"} and meanings["p"] == {"project-dir"} and meanings["s"] == {"site"}


@pytest.mark.parametrize("task", ["lab.up", "edge.bootstrap", "fleet.status", "stack.reap"])
def test_dash_h_after_any_task_is_its_help(task):
    done = kit(task, "-h")
    assert done.returncode == 0, done.stderr
    assert done.stdout == kit("--help", task).stdout and done.stdout.startswith(f"Usage: ./kit {task}")


@pytest.mark.parametrize("typed", [("--json=yes",), ("--json", "yes"), ("-j=1",)])
def test_a_switch_given_a_value_is_said_in_the_kits_words(typed):
    done = kit("edge.status", "--site", "qa", *typed)
    assert done.returncode == 2 and "no task named" not in done.stderr
    value = typed[-1].rpartition("=")[2]
    assert " ".join(done.stderr.split()) == (f"kit: edge.status: --json is a switch and takes no value (got "
                                             f"'{value}'): give --json alone to turn it on, or leave it out")
