#!/usr/bin/python3
"""Lab stand-in for systemctl (no systemd as PID 1 here): each started unit gets a small supervisor process that
plays systemd's part for it: the notify socket (Type=notify: READY=1 means started), Restart=/RestartSec=,
TimeoutStartSec=, the unit's journal and its state.

Verbs: daemon-reload, enable/disable (unit name or unit file path), start/restart [--no-block], stop,
reset-failed, is-active [--quiet], is-enabled [--quiet], status, show [-p A,B] [--value]; exit codes as systemctl's.
Files in /var/log/lab-units/ (<unit> without .service): <unit>.log the journal (journal "short" lines, read by the
journalctl stand-in), <unit>.starts one "<epoch> <pid>" line per process start, <unit>.state
"ActiveState SubState supervisor-pid main-pid NRestarts Result", <unit>.notify the notify socket.
"""
import os
import re
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


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


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
FIELDS = ("active", "sub", "supervisor", "main", "restarts", "result")


def read_state(unit: str) -> dict:
    """The unit's state; a unit whose supervisor is gone is inactive (or failed, if it failed)."""
    try:
        values = lab_file(unit, "state").read_text().split()
        state = dict(zip(FIELDS, values))
        state.update(supervisor=int(state["supervisor"]), main=int(state["main"]),
                     restarts=int(state["restarts"]))
    except (OSError, ValueError, KeyError):
        return {"active": "inactive", "sub": "dead", "supervisor": 0, "main": 0, "restarts": 0,
                "result": "success"}
    if not alive(state["supervisor"]) and state["active"] != "failed":
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
        self.restarts, self.child = 0, None
        self.description = self.settings["Description"]

    def journal(self, identifier: str, pid: int, message: str) -> None:
        stamp = time.strftime("%b %d %H:%M:%S")
        with self.lock, open(lab_file(self.unit, "log"), "a") as log:
            log.write(f"{stamp} {socket.gethostname()} {identifier}[{pid}]: {message}\n")

    def systemd(self, message: str) -> None:
        self.journal("systemd", 1, message)

    def state(self, active: str, sub: str, result: str = "success") -> None:
        write_state(self.unit, active=active, sub=sub, supervisor=os.getpid(),
                    main=self.child.pid if self.child and self.child.poll() is None else 0,
                    restarts=self.restarts, result=result)

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
        self.child = None
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


# --- verbs -----------------------------------------------------------------------------------
def start(unit: str, block: bool) -> int:
    state = read_state(unit)
    if state["active"] not in ("active", "activating", "deactivating"):
        parse_unit(unit)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        lab_file(unit, "state").unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "__supervise", unit],
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


def stop(unit: str) -> int:
    state = read_state(unit)
    if state["supervisor"] and alive(state["supervisor"]):
        os.kill(state["supervisor"], signal.SIGTERM)
        while alive(state["supervisor"]):
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
        elif arg.startswith("-"):
            opts[arg] = True
        else:
            words.append(arg)
        i += 1
    return words, opts


def main(args: list[str]) -> int:
    if args[:1] == ["__supervise"]:
        return Supervisor(args[1]).run()
    words, opts = parse_args(args)
    quiet = "--quiet" in opts or "-q" in opts
    block = "--no-block" not in opts
    if not words:
        print("systemctl (lab stand-in): missing verb", file=sys.stderr)
        return 1
    verb, units = words[0], [unit_name(u) for u in words[1:]]
    if verb == "daemon-reload":
        return 0
    actions = {"start": lambda u: start(u, block), "stop": stop, "enable": enable, "disable": disable,
               "restart": lambda u: stop(u) or start(u, block), "status": status,
               "reset-failed": reset_failed, "is-active": lambda u: is_active(u, quiet),
               "is-enabled": lambda u: is_enabled(u, quiet),
               "show": lambda u: show(u, opts["props"], "--value" in opts)}
    if verb not in actions or not units:
        print(f"systemctl (lab stand-in): unsupported: {' '.join(args)}", file=sys.stderr)
        return 1
    return max(actions[verb](u) for u in units)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
