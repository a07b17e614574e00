"""The tasks through ./kit itself: exit codes, messages without tracebacks, the interactive destroy prompt."""
import os
import pty
import re
import subprocess
import time

from infra.lifecycle import tasks
from infra.stack.stack_config import ROOT

KIT = str(ROOT / "kit")


def _kit_on_a_terminal(args: list[str], answer: str, timeout: float = 60) -> tuple[int, str]:
    """Run ./kit with a pseudo-terminal as stdin/stdout; type `answer` once the prompt appears."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([KIT, *args], stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True)
    os.close(terminal)
    output, answered, deadline = b"", False, time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the process has exited
            break
        output += chunk
        if not answered and "Type the env name to destroy it:" in _plain(output):
            os.write(controller, answer.encode() + b"\r")
            answered = True
    os.close(controller)
    return process.wait(timeout=timeout), _plain(output)


def _plain(output: bytes) -> str:
    """Terminal output without colours, with line wrapping undone."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", output.decode(errors="replace")).split())


def test_a_wrong_name_at_the_prompt_refuses_prod(project):
    code, output = _kit_on_a_terminal(["destroy", "--env", "prod", "--force", "--project-dir", str(project.root)],
                                      answer="pord")
    assert code == 2, output
    assert "prod is a protected environment (lifecycle.protected). Type the env name to destroy it" in output
    assert "destroy refused" in output and "'pord'" in output
    assert "Traceback" not in output and project.calls() == []


def test_the_right_name_at_the_prompt_destroys_a_non_ephemeral_env(project):
    project.run(tasks.up, env="dev")
    code, output = _kit_on_a_terminal(["destroy", "--env", "dev", "--force", "--project-dir", str(project.root)],
                                      answer="dev")
    assert code == 0, output
    assert project.operations("destroy") == ["dev"] and "destroy dev: delete 42" in output


def test_bad_input_through_kit_is_exit_2_with_every_problem_and_no_traceback(project):
    done = subprocess.run([KIT, "stack.ephemeral", "--name", "-x", "--ttl", "99d", "--from", "qa",
                           "--project-dir", str(project.root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--name: '-x'" in done.stderr and "--ttl: '99d' is outside" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout and project.calls() == []
