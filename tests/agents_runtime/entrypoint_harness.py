"""Runs the real azp-entrypoint (bash) as the image's user (UID 10001) against the stand-ins.

A "container" here is a private directory tree: the agent package (read-only for the agent
user, like the image), the work and state directories (writable, like the emptyDirs) and a
token file: by default in a writable directory, like the in-memory emptyDir the pod's init
container copies the Secret into; with `secret_mount=True` read-only, like a Secret volume
(root-owned, group fsGroup, on a read-only mount).
"""
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = REPO / "agents" / "image"
STANDIN_AGENT = Path(__file__).resolve().parent / "standin_agent"
AGENT_UID = 10001
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _own(path: Path, mode: int) -> None:
    os.chown(path, AGENT_UID, AGENT_UID)
    path.chmod(mode)


class AgentContainer:
    """One simulated agent container; `start()` runs the entrypoint, `stop()` cleans up."""

    def __init__(self, org_url: str, token: str, name: str = "agent-pod-1",
                 with_package: bool = True, machine: str | None = None, secret_mount: bool = False,
                 shims: dict[str, str] | None = None, ignored_signals: tuple[int, ...] = (),
                 describe=None, **env: str):
        self.root = Path(tempfile.mkdtemp(prefix="azp-container-"))
        self.root.chmod(0o755)
        self.agent_dir, self.work, self.state = (self.root / d for d in ("agent", "work", "state"))
        if with_package:
            shutil.copytree(STANDIN_AGENT, self.agent_dir, symlinks=True)
        else:
            self.agent_dir.mkdir()
        for writable in (self.work, self.state):
            writable.mkdir()
            _own(writable, 0o700)
        secrets = self.root / "secrets"
        secrets.mkdir()
        self.token_file = secrets / "token"
        self.token_file.write_text(token + "\n")
        if secret_mount:
            os.chown(self.token_file, 0, AGENT_UID)
            self.token_file.chmod(0o440)
        else:
            _own(secrets, 0o700)
            _own(self.token_file, 0o400)
        shims = dict(shims or {})
        if machine:
            shims["uname"] = f'[ "$1" = "-m" ] && echo {machine} && exit 0\nexec /bin/uname "$@"'
        path = f"{self._shims(shims)}:{SYSTEM_PATH}" if shims else SYSTEM_PATH
        self.ignored_signals, self.describe = ignored_signals, describe
        self.env = {"PATH": path, "HOME": str(self.work), "LANG": "C.UTF-8",
                    "AZP_URL": org_url, "AZP_POOL": "edge-arm64", "AZP_AGENT_NAME": name,
                    "AZP_TOKEN_FILE": str(self.token_file), "AZP_WORK": str(self.work),
                    "AZP_AGENT_DIR": str(self.agent_dir), "AZP_STATE_DIR": str(self.state), **env}
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.started_at = 0.0

    def _shims(self, shims: dict[str, str]) -> Path:
        """Commands put first on the entrypoint's PATH: name -> sh script body."""
        bindir = self.root / "fakebin"
        bindir.mkdir()
        for name, body in shims.items():
            (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
            (bindir / name).chmod(0o755)
        return bindir

    @property
    def home(self) -> Path:
        return self.work / ".agent-home"

    def _as_agent(self, *argv: str) -> list[str]:
        return ["setpriv", f"--reuid={AGENT_UID}", f"--regid={AGENT_UID}", "--clear-groups", *argv]

    def start(self) -> "AgentContainer":
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self._as_agent(str(IMAGE_DIR / "azp-entrypoint")), env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=self._ignore_signals if self.ignored_signals else None)
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()
        return self

    def _ignore_signals(self) -> None:  # in the child: as a parent that ignores them would hand them down
        for signum in self.ignored_signals:
            signal.signal(signum, signal.SIG_IGN)

    def _collect(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)

    @property
    def log(self) -> str:
        return "".join(self.output)

    def wait_for(self, predicate, timeout: float = 15.0, what: str = "condition") -> float:
        """Seconds since start when `predicate()` first held; AssertionError with the log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return time.monotonic() - self.started_at
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; entrypoint output:\n{self.log}{self.diagnostics()}")

    def wait_for_log(self, text: str, timeout: float = 15.0) -> float:
        return self.wait_for(lambda: text in self.log, timeout, repr(text))

    def probe(self, kind: str) -> subprocess.CompletedProcess:
        return subprocess.run(self._as_agent(str(IMAGE_DIR / "azp-probe"), kind), env=self.env,
                              capture_output=True, text=True, timeout=10)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        # setpriv execs the entrypoint, so this is the entrypoint's own pid (as under tini).
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"entrypoint did not exit; output:\n{self.log}{self.diagnostics()}") from None
        self._collector.join(5)  # the whole output, up to the exit
        return code

    def diagnostics(self) -> str:
        """What a timeout shows: the agent user's process tree (with each process's ignored-signal mask),
        the entrypoint's phase and the stand-in's state."""
        tree = subprocess.run(["ps", "-ww", "-u", str(AGENT_UID), "--forest", "-o", "pid,ppid,pgid,stat,ignored,cmd"],
                              capture_output=True, text=True).stdout
        standin = self.describe() if self.describe else "(not given)"
        return f"\nprocess tree (ps -o pid,ppid,pgid,stat,ignored,cmd):\n{tree}phase: {self.phase()}\nstand-in: {standin}"

    def phase(self) -> str:
        try:
            return (self.state / "phase").read_text().strip()
        except FileNotFoundError:
            return ""

    def agent_processes(self) -> list[int]:
        """Pids of this container's processes: the agent user's, carrying its state dir in env."""
        marker = f"AZP_STATE_DIR={self.state}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and entry.stat().st_uid == AGENT_UID and \
                        marker in read_proc(int(entry.name), "environ").split(b"\0"):
                    pids.append(int(entry.name))
            except FileNotFoundError:
                continue
        return pids

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pid in self.agent_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def read_proc(pid: int, field: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{field}").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return b""


def agent_user_processes() -> list[int]:
    """Pids of every process running as the agent user (any container of the test run)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == AGENT_UID:
                pids.append(int(entry.name))
        except FileNotFoundError:
            continue
    return pids


class ProcWatch:
    """Samples environ and cmdline of every agent-user process until stopped; notes each phase seen."""

    def __init__(self, box: AgentContainer, secret: str):
        self.box, self.secret = box, secret.encode()
        self.leaks: list[tuple[str, int, str, bytes]] = []   # (phase, pid, field, cmdline)
        self.phases: dict[str, int] = {}                     # phase -> processes inspected in it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ProcWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            phase = self.box.phase()
            for pid in agent_user_processes():
                cmdline = read_proc(pid, "cmdline")
                for field, content in (("cmdline", cmdline), ("environ", read_proc(pid, "environ"))):
                    if self.secret in content:
                        self.leaks.append((phase, pid, field, cmdline))
                self.phases[phase] = self.phases.get(phase, 0) + 1
            time.sleep(0.005)
