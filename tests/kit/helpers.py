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
    """Lines longer than the terminal (but for one word alone, a URL or path that is never split) or ending in
    blanks."""
    return [line for line in text.splitlines()
            if (len(line) > WIDTH and len(line.split()) > 1) or line != line.rstrip()]


def kit_on_a_terminal(*args: str, columns: int) -> tuple[int, str]:
    """Run ./kit with stdin, stdout and stderr on a pseudo-terminal `columns` wide (COLUMNS unset, so the kit
    asks the terminal); its exit code and what the terminal showed, with CRLFs as newlines."""
    import fcntl
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen([str(ROOT / "kit"), *args], stdin=terminal, stdout=terminal, stderr=terminal,
                               close_fds=True, env=environment, cwd=ROOT)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the kit has exited
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    return process.wait(timeout=300), output.decode().replace("\r\n", "\n")
