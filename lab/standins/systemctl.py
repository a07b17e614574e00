#!/usr/bin/python3
"""Lab stand-in for systemctl (no systemd as PID 1 here; units.py beside it plays systemd's part per unit).

Verbs: daemon-reload, enable/disable (unit name or unit file path), start/restart [--no-block], stop,
reset-failed, is-active [--quiet], is-enabled [--quiet], status, show [-p A,B] [--value]; exit codes as systemctl's.

`restart --no-block` returns once its job is queued, as systemctl does; systemd runs queued jobs from its run queue
at idle priority (src/core/manager.c manager_setup_run_queue: SD_EVENT_PRIORITY_IDLE), so a query answered before the
job runs still sees the old instance active. The lab widens that window to JOB_DISPATCH_S so a check that races it
fails every time; a stop cancels a queued restart (systemd replaces the job), a second restart replaces it.
"""
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from units import UNIT_DIR, WANTS_DIR, LOG_DIR, alive, lab_file, parse_unit, read_state, unit_name

UNITS = Path(__file__).resolve().parent / "units.py"
JOB_DISPATCH_S = 1.0


# --- verbs -----------------------------------------------------------------------------------
def start(unit: str, block: bool) -> int:
    state = read_state(unit)
    if state["active"] not in ("active", "activating", "deactivating"):
        parse_unit(unit)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        lab_file(unit, "state").unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, str(UNITS), unit],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        while read_state(unit)["supervisor"] != proc.pid:
            if proc.poll() is not None:
                print(f"Failed to start {unit}.", file=sys.stderr)
                return 1
            time.sleep(0.02)
    elif state["sub"] == "auto-restart":      # waiting RestartSec: a start job starts it at once
        first = state["restarts"]
        os.kill(state["supervisor"], signal.SIGUSR1)
        while read_state(unit)["restarts"] == first and read_state(unit)["sub"] == "auto-restart":
            time.sleep(0.02)
    return wait_started(unit) if block else 0


def wait_started(unit: str) -> int:
    """Like a start job: done when the unit is active, failed when its start attempt failed."""
    first = read_state(unit)
    while True:
        state = read_state(unit)
        if state["active"] == "active":
            return 0
        if state["active"] in ("failed", "inactive") or state["sub"] == "auto-restart" or \
                state["restarts"] != first["restarts"]:
            print(f"Job for {unit} failed because the control process exited with error code.\n"
                  f"See \"systemctl status {unit}\" and \"journalctl -xeu {unit}\" for details.",
                  file=sys.stderr)
            return 1
        time.sleep(0.05)


def queue_restart(unit: str) -> int:
    """Queue a restart job and return; the job runs JOB_DISPATCH_S later (a newer one replaces it: one restart)."""
    job = lab_file(unit, "job")
    parse_unit(unit)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    job.write_text(token)
    subprocess.Popen([sys.executable, __file__, "--lab-run-job", token, "restart", unit], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    return 0


def run_job(token: str, unit: str) -> int:
    """The queued restart, unless a stop cancelled it meanwhile."""
    time.sleep(JOB_DISPATCH_S)
    job = lab_file(unit, "job")
    if not job.exists() or job.read_text() != token:
        return 0
    job.unlink()
    return stop(unit) or start(unit, block=False)


def stop(unit: str) -> int:
    lab_file(unit, "job").unlink(missing_ok=True)
    state = read_state(unit)
    if alive(state["supervisor"], state["started"]):
        os.kill(state["supervisor"], signal.SIGTERM)
        while alive(state["supervisor"], state["started"]):
            time.sleep(0.05)
    return 0


def reset_failed(unit: str) -> int:
    if read_state(unit)["active"] == "failed":
        lab_file(unit, "state").unlink(missing_ok=True)
    return 0


def enable(unit: str) -> int:
    if not (UNIT_DIR / unit).exists():
        print(f"Failed to enable unit: Unit file {unit} does not exist.", file=sys.stderr)
        return 1
    WANTS_DIR.mkdir(parents=True, exist_ok=True)
    link = WANTS_DIR / unit
    if not link.is_symlink():
        link.symlink_to(UNIT_DIR / unit)
        print(f"Created symlink {link} \u2192 {UNIT_DIR / unit}.", file=sys.stderr)
    return 0


def disable(unit: str) -> int:
    link = WANTS_DIR / unit
    if link.is_symlink():
        link.unlink()
        print(f"Removed \"{link}\".", file=sys.stderr)
    return 0


def is_active(unit: str, quiet: bool) -> int:
    active = read_state(unit)["active"]
    if not quiet:
        print(active)
    return 0 if active == "active" else 3


def is_enabled(unit: str, quiet: bool) -> int:
    if not (UNIT_DIR / unit).exists():
        print(f"Failed to get unit file state for {unit}: No such file or directory", file=sys.stderr)
        return 1
    enabled = (WANTS_DIR / unit).is_symlink()
    if not quiet:
        print("enabled" if enabled else "disabled")
    return 0 if enabled else 1


def properties(unit: str) -> dict:
    state = read_state(unit)
    exists = (UNIT_DIR / unit).exists()
    return {"Id": unit, "ActiveState": state["active"], "SubState": state["sub"],
            "MainPID": str(state["main"]), "NRestarts": str(state["restarts"]), "Result": state["result"],
            "InvocationID": state["invocation"],
            "LoadState": "loaded" if exists else "not-found",
            "UnitFileState": ("enabled" if (WANTS_DIR / unit).is_symlink() else "disabled") if exists else ""}


def show(unit: str, wanted: list[str], value_only: bool) -> int:
    props = properties(unit)
    for name in wanted or list(props):
        print(props.get(name, "") if value_only else f"{name}={props.get(name, '')}")
    return 0


def status(unit: str) -> int:
    props = properties(unit)
    print(f"* {unit}\n     Loaded: {props['LoadState']} ({UNIT_DIR / unit}; {props['UnitFileState']})\n"
          f"     Active: {props['ActiveState']} ({props['SubState']})\n   Main PID: {props['MainPID']}")
    return 0 if props["ActiveState"] == "active" else 3


def parse_args(args: list[str]) -> tuple[list[str], dict]:
    words, opts, i = [], {"props": []}, 0
    while i < len(args):
        arg = args[i]
        if arg in ("-p", "--property") and i + 1 < len(args):
            opts["props"] += args[i + 1].split(",")
            i += 1
        elif arg.startswith("--property="):
            opts["props"] += arg.split("=", 1)[1].split(",")
        elif arg == "--lab-run-job" and i + 1 < len(args):   # the queued job of `restart --no-block` (above)
            opts["job"] = args[i + 1]
            i += 1
        elif arg.startswith("-"):
            opts[arg] = True
        else:
            words.append(arg)
        i += 1
    return words, opts


def main(args: list[str]) -> int:
    words, opts = parse_args(args)
    quiet = "--quiet" in opts or "-q" in opts
    block = "--no-block" not in opts
    if not words:
        print("systemctl (lab stand-in): missing verb", file=sys.stderr)
        return 1
    verb, units = words[0], [unit_name(u) for u in words[1:]]
    if verb == "daemon-reload":
        return 0
    if "job" in opts:
        return max(run_job(opts["job"], u) for u in units)
    actions = {"start": lambda u: start(u, block), "stop": stop, "enable": enable, "disable": disable,
               "restart": lambda u: (stop(u) or start(u, block)) if block else queue_restart(u), "status": status,
               "reset-failed": reset_failed, "is-active": lambda u: is_active(u, quiet),
               "is-enabled": lambda u: is_enabled(u, quiet),
               "show": lambda u: show(u, opts["props"], "--value" in opts)}
    if verb not in actions or not units:
        print(f"systemctl (lab stand-in): unsupported: {' '.join(args)}", file=sys.stderr)
        return 1
    return max(actions[verb](u) for u in units)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
