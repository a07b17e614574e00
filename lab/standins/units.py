#!/usr/bin/python3
"""The lab's stand-in for systemd itself (PID 1's part), one supervisor process per started unit: it reads the unit
file, holds the notify socket (Type=notify: READY=1 means started), applies TimeoutStartSec=, Restart=/RestartSec=,
writes the unit's journal and its state. `python3 units.py UNIT` runs the supervisor; systemctl.py imports the rest.

Files in /var/log/lab-units/ (<unit> without .service): <unit>.log the journal (journal "short" lines, read by the
journalctl stand-in), <unit>.starts one "<epoch> <pid>" line per process start, <unit>.state
"ActiveState SubState supervisor-pid main-pid NRestarts Result supervisor-start-time InvocationID", <unit>.notify the
notify socket, <unit>.job a restart job queued by `systemctl restart --no-block` (systemctl.py).
Like systemd (src/core/service.c service_start: unit_acquire_invocation_id), every start of the unit, an automatic
restart included, gets a new InvocationID.
"""
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

UNIT_DIR = Path("/etc/systemd/system")
WANTS_DIR = UNIT_DIR / "multi-user.target.wants"
LOG_DIR = Path("/var/log/lab-units")
STOP_TIMEOUT = 10.0
DEFAULT_START_TIMEOUT = 90.0
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def unit_name(name: str) -> str:
    name = os.path.basename(name)
    return name if "." in name else name + ".service"


def lab_file(unit: str, suffix: str) -> Path:
    return LOG_DIR / f"{unit.removesuffix('.service')}.{suffix}"


def start_time(pid: int) -> str:
    """When the process started (clock ticks since boot), '' when it is gone or a zombie. PIDs are the machine's
    (the lab's hosts share its PID namespace) and get reused: only a pid with its start time names one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def alive(pid: int, started: str) -> bool:
    """Whether `pid` is still the process that started at `started` (never another one that got its pid)."""
    return bool(started) and start_time(pid) == started


# --- unit files ------------------------------------------------------------------------------
def parse_unit(unit: str) -> dict:
    """The [Service] settings the lab honours, from /etc/systemd/system/<unit>."""
    path = UNIT_DIR / unit
    if not path.exists():
        raise SystemExit(f"Failed to start {unit}: Unit {unit} not found.", 5)
    text = path.read_text().replace("\\\n", " ")
    settings = {"EnvironmentFile": [], "Type": "simple", "Restart": "no", "RestartSec": "100ms",
                "TimeoutStartSec": str(DEFAULT_START_TIMEOUT), "Description": unit}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith(("#", ";")):
            continue
        value = value.strip().replace("%N", unit.removesuffix(".service"))
        if key == "EnvironmentFile":
            settings[key].append(value)
        else:
            settings[key] = value
    if not settings.get("ExecStart"):
        raise SystemExit(f"{unit} has no ExecStart", 1)
    return settings


def seconds(text: str) -> float:
    """systemd time spans: '5s', '100ms', '1min 30s', '0', 'infinity'."""
    if text.strip() in ("infinity", ""):
        return 0.0
    scale = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "": 1}
    return sum(float(n) * scale[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|sec|s|min|m|h|)", text))


def environment(files: list[str]) -> dict:
    env = {"PATH": PATH}
    for entry in files:
        optional, name = entry.startswith("-"), entry.lstrip("-")
        try:
            lines = Path(name).read_text().splitlines()
        except OSError:
            if optional:
                continue
            raise SystemExit(f"Failed to load environment file {name}", 1)
        for line in lines:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                env[key] = value.strip().strip("'\"")
    return env


# --- state -----------------------------------------------------------------------------------
FIELDS = ("active", "sub", "supervisor", "main", "restarts", "result", "started", "invocation")


def read_state(unit: str) -> dict:
    """The unit's state; a unit whose supervisor is gone is inactive (or failed, if it failed)."""
    try:
        values = lab_file(unit, "state").read_text().split()
        state = {"invocation": "", **dict(zip(FIELDS, values))}
        state.update(supervisor=int(state["supervisor"]), main=int(state["main"]),
                     restarts=int(state["restarts"]))
    except (OSError, ValueError, KeyError):
        return {"active": "inactive", "sub": "dead", "supervisor": 0, "main": 0, "restarts": 0,
                "result": "success", "started": "", "invocation": ""}
    if not alive(state["supervisor"], state["started"]) and state["active"] != "failed":
        state.update(active="inactive", sub="dead", main=0)
    return state


def write_state(unit: str, **state) -> None:
    path = lab_file(unit, "state")
    tmp = path.with_suffix(".state-tmp")
    tmp.write_text(" ".join(str(state[f]) for f in FIELDS) + "\n")
    tmp.replace(path)


# --- the supervisor (systemd's part for one unit) ----------------------------------------------
class Supervisor:
    def __init__(self, unit: str):
        self.unit, self.settings = unit, parse_unit(unit)
        self.stopping, self.wake = threading.Event(), threading.Event()
        self.lock = threading.Lock()
        self.restarts, self.child, self.invocation = 0, None, ""
        self.description = self.settings["Description"]
        self.since = start_time(os.getpid())  # with its pid, names this supervisor (pids get reused)

    def journal(self, identifier: str, pid: int, message: str) -> None:
        stamp = time.strftime("%b %d %H:%M:%S")
        with self.lock, open(lab_file(self.unit, "log"), "a") as log:
            log.write(f"{stamp} {socket.gethostname()} {identifier}[{pid}]: {message}\n")

    def systemd(self, message: str) -> None:
        self.journal("systemd", 1, message)

    def state(self, active: str, sub: str, result: str = "success") -> None:
        write_state(self.unit, active=active, sub=sub, supervisor=os.getpid(),
                    main=self.child.pid if self.child and self.child.poll() is None else 0,
                    restarts=self.restarts, result=result, started=self.since, invocation=self.invocation)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGUSR1, lambda *_: self.wake.set())   # a start job: restart now, not after RestartSec
        notify_path = lab_file(self.unit, "notify")
        notify_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            notify.settimeout(0.25)
            while True:
                result = self.run_once(notify, str(notify_path))
                if self.stopping.is_set():
                    self.state("inactive", "dead")
                    self.systemd(f"Stopped {self.unit} - {self.description}.")
                    return 0
                if self.settings["Restart"] not in ("always", "on-failure") or (
                        self.settings["Restart"] == "on-failure" and result == "success"):
                    self.state("failed" if result != "success" else "inactive",
                               "failed" if result != "success" else "dead", result)
                    return 0
                self.state("activating", "auto-restart", result)
                self.wake.clear()
                deadline = time.monotonic() + seconds(self.settings["RestartSec"])
                while not (self.stopping.is_set() or self.wake.is_set()) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self.stopping.is_set():
                    continue
                self.restarts += 1
                self.systemd(f"{self.unit}: Scheduled restart job, restart counter is at {self.restarts}.")

    def run_once(self, notify: socket.socket, notify_path: str) -> str:
        """One start of the main process until it exits; returns the unit's Result."""
        self.child, self.invocation = None, secrets.token_hex(16)
        self.state("activating", "start")
        self.systemd(f"Starting {self.unit} - {self.description}...")
        env = environment(self.settings["EnvironmentFile"])
        if self.settings["Type"] == "notify":
            env["NOTIFY_SOCKET"] = notify_path
        argv = shlex.split(self.settings["ExecStart"].lstrip("-@+!"))
        self.child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, env=env, start_new_session=True)
        with open(lab_file(self.unit, "starts"), "a") as starts:
            starts.write(f"{time.time():.3f} {self.child.pid}\n")
        self.state("activating", "start")
        pump = threading.Thread(target=self.pump, args=(os.path.basename(argv[0]),), daemon=True)
        pump.start()
        ready = self.settings["Type"] != "notify"
        if ready:
            self.started()
        timeout = seconds(self.settings.get("TimeoutStartSec", "0"))
        deadline = time.monotonic() + timeout if timeout else None
        while self.child.poll() is None:
            if ready:                 # nothing more to wait for but the exit (signals still interrupt it)
                self.child.wait()
                break
            try:
                message = notify.recv(4096).decode(errors="replace")
            except socket.timeout:
                message = ""
            if not ready and "READY=1" in message.split("\n"):
                ready = True
                self.started()
            if not ready and deadline and time.monotonic() > deadline and not self.stopping.is_set():
                self.systemd(f"{self.unit}: start operation timed out. Terminating.")
                self.kill()
                self.child.wait()
                pump.join(2)
                self.systemd(f"{self.unit}: Failed with result 'timeout'.")
                return "timeout"
        pump.join(2)
        code = self.child.returncode
        if self.stopping.is_set():
            return "success"
        status = f"status={code}/FAILURE" if code > 0 else (
            f"signal={signal.Signals(-code).name}" if code < 0 else "status=0/SUCCESS")
        self.systemd(f"{self.unit}: Main process exited, code={'exited' if code >= 0 else 'killed'}, {status}")
        if code == 0 and ready:
            return "success"
        self.systemd(f"{self.unit}: Failed with result 'exit-code'.")
        if not ready:
            self.systemd(f"Failed to start {self.unit} - {self.description}.")
        return "exit-code"

    def started(self) -> None:
        self.state("active", "running")
        self.systemd(f"Started {self.unit} - {self.description}.")

    def pump(self, identifier: str) -> None:
        for raw in self.child.stdout:
            self.journal(identifier, self.child.pid, raw.decode(errors="replace").rstrip("\n"))

    def kill(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        try:
            os.killpg(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        timer = threading.Timer(STOP_TIMEOUT, lambda: child.poll() is None and os.killpg(child.pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    def stop(self) -> None:
        if not self.stopping.is_set():
            self.stopping.set()
            self.systemd(f"Stopping {self.unit} - {self.description}...")
            self.state("deactivating", "stop-sigterm")
            self.kill()


if __name__ == "__main__":
    sys.exit(Supervisor(sys.argv[1]).run())
