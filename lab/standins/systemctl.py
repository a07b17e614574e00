#!/usr/bin/python3
"""Lab stand-in for systemctl: runs a unit's ExecStart detached, no systemd needed.

Supports daemon-reload, enable, disable, start, stop, restart, is-active [--quiet], is-enabled,
status, with systemctl's exit codes (is-active: 0 active, 3 inactive). Each (re)start appends a
line to /var/log/lab-units/<unit>.starts; the unit's output goes to /var/log/lab-units/<unit>.log
(<unit> without .service, e.g. k3s.starts).
"""
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

UNIT_DIR = Path("/etc/systemd/system")
WANTS_DIR = UNIT_DIR / "multi-user.target.wants"
LOG_DIR = Path("/var/log/lab-units")
STOP_TIMEOUT = 10.0


def unit_name(name):
    return name if "." in name else name + ".service"


def log_path(unit, suffix):
    """/var/log/lab-units/<unit without .service>.<suffix>"""
    return LOG_DIR / f"{unit.removesuffix('.service')}.{suffix}"


def pid_file(unit):
    return log_path(unit, "pid")


def running_pid(unit):
    """PID of the unit's main process when it runs (zombies count as stopped)."""
    try:
        pid = int(pid_file(unit).read_text())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError):
        return None
    return None if state in ("Z", "X") else pid


def parse_unit(unit):
    """ExecStart argv and environment files of a unit file (backslash continuations joined)."""
    path = UNIT_DIR / unit
    if not path.exists():
        raise SystemExit(f"Failed to start {unit}: Unit {unit} not found.", 5)
    text = path.read_text().replace("\\\n", " ")
    exec_start, env_files = None, []
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "ExecStart":
            exec_start = shlex.split(value)
        elif key == "EnvironmentFile":
            env_files.append((value.startswith("-"), value.lstrip("-")))
    if not exec_start:
        raise SystemExit(f"{unit} has no ExecStart", 1)
    return exec_start, env_files


def unit_environment(env_files):
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for optional, name in env_files:
        try:
            lines = Path(name).read_text().splitlines()
        except OSError:
            if optional:
                continue
            raise SystemExit(f"Failed to load environment file {name}", 1)
        for line in lines:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                env[key] = value.strip("'\"")
    return env


def start(unit):
    if running_pid(unit):
        return 0
    argv, env_files = parse_unit(unit)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(log_path(unit, "log"), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=unit_environment(env_files), start_new_session=True,
                                close_fds=True)
    pid_file(unit).write_text(str(proc.pid))
    with open(log_path(unit, "starts"), "a") as starts:
        starts.write(f"{time.time():.3f} {proc.pid}\n")
    return 0


def stop(unit):
    pid = running_pid(unit)
    if pid:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while running_pid(unit) and time.monotonic() < deadline:
            time.sleep(0.05)
        if running_pid(unit):
            os.killpg(pid, signal.SIGKILL)
    pid_file(unit).unlink(missing_ok=True)
    return 0


def enable(unit):
    parse_unit(unit)
    WANTS_DIR.mkdir(parents=True, exist_ok=True)
    link = WANTS_DIR / unit
    if not link.is_symlink():
        link.symlink_to(UNIT_DIR / unit)
        print(f"Created symlink {link} \u2192 {UNIT_DIR / unit}.", file=sys.stderr)
    return 0


def disable(unit):
    link = WANTS_DIR / unit
    if link.is_symlink():
        link.unlink()
        print(f"Removed \"{link}\".", file=sys.stderr)
    return 0


def is_active(unit, quiet):
    active = running_pid(unit) is not None
    if not quiet:
        print("active" if active else ("failed" if pid_file(unit).exists() else "inactive"))
    return 0 if active else 3


def is_enabled(unit, quiet):
    enabled = (WANTS_DIR / unit).is_symlink()
    if not quiet:
        print("enabled" if enabled else "disabled")
    return 0 if enabled else 1


def status(unit):
    code = is_active(unit, quiet=True)
    state = "active (running)" if code == 0 else "inactive (dead)"
    print(f"* {unit}\n     Active: {state}")
    return code


def main(args):
    quiet = "--quiet" in args or "-q" in args
    args = [a for a in args if not a.startswith("-")]
    if not args:
        print("systemctl (lab stand-in): missing verb", file=sys.stderr)
        return 1
    verb, units = args[0], [unit_name(u) for u in args[1:]]
    if verb == "daemon-reload":
        return 0
    actions = {"start": start, "stop": stop, "enable": enable, "disable": disable,
               "restart": lambda u: stop(u) or start(u), "status": status,
               "is-active": lambda u: is_active(u, quiet), "is-enabled": lambda u: is_enabled(u, quiet)}
    if verb not in actions or not units:
        print(f"systemctl (lab stand-in): unsupported: {' '.join(args)}", file=sys.stderr)
        return 1
    return max(actions[verb](u) for u in units)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
