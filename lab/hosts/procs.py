"""Process identity that survives PID reuse: a PID plus its kernel start time."""
import os
import signal
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces; fields after it are space separated
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def is_alive(pid: int, started: int | None) -> bool:
    """True when `pid` still names the process that started at `started`."""
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def argv_of(pid: int) -> list[str] | None:
    """The argv of a running process, or None when it is gone (or a kernel thread)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]] or None


def kill_all(pids: list[int]) -> None:
    """SIGKILL every listed process that still exists."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
