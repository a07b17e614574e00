"""Run ./kit as a user does: a subprocess of the real entry point, at a terminal width of 80 columns."""
import os
import subprocess

from infra.stack.stack_config import ROOT

WIDTH = 80


def kit(*args: str, cwd=ROOT, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "COLUMNS": str(WIDTH), **env}
    return subprocess.run([str(ROOT / "kit"), *args], capture_output=True, text=True, cwd=cwd, env=environment,
                          timeout=300)


def too_wide(text: str) -> list[str]:
    """Lines longer than the terminal or ending in blanks."""
    return [line for line in text.splitlines() if len(line) > WIDTH or line != line.rstrip()]
