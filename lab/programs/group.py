"""Host programs of one lab cluster, run against its ApiServer: each spawned niced in its own process group with a
0600 log and its own data folder, healthy once its health URL answers 200, and ended together.

    group.spawn(name, argv, health_url, env)   # then group.wait_healthy(timeout)
    group.log_tail(name), group.stop()

The programs' starters (flux_site.py, nodes.py) subclass it; `controller_manager_argv` is kube-controller-manager's
command line for such a cluster, which both run.
"""
from __future__ import annotations

import os
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lab.programs.apiserver import ApiServer, end_group, rss_kib

STOP_TIMEOUT = 10.0


class ProgramError(RuntimeError):
    """A program did not start or become healthy; the message carries the end of its log."""


@dataclass
class ProgramGroup:
    """The running programs; `stop()` (or leaving the `with`) ends them all."""

    api: ApiServer
    work: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    started_s: dict[str, float] = field(default_factory=dict)  # seconds from spawn to healthy, per program
    health_urls: dict[str, str] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str], health_url: str, env: dict[str, str] | None = None) -> None:
        """Start `argv` (niced, out of cluster: KUBECONFIG is the API server's admin kubeconfig)."""
        environ = dict(os.environ, KUBECONFIG=str(self.api.kubeconfig), **(env or {}))
        environ.pop("KUBERNETES_SERVICE_HOST", None)  # out of cluster, whatever the caller runs in
        (self.work / f"{name}.data").mkdir(exist_ok=True)
        with open(os.open(self.work / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            self.procs[name] = subprocess.Popen(["nice", "-n", "10", *argv], stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=log, env=environ, cwd=self.work / f"{name}.data",
                                                start_new_session=True)
        self.health_urls[name] = health_url
        self.started_s[name] = time.monotonic()

    def _healthy(self, name: str) -> bool:
        url = self.health_urls[name]  # a Kubernetes component's secure port: health paths are open to anyone
        context = ssl._create_unverified_context() if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                return answer.status == 200
        except OSError:
            return False

    def wait_healthy(self, timeout: float) -> None:
        """Until every program answers; ProgramError naming the one that exited or did not."""
        deadline, waiting = time.monotonic() + timeout, set(self.procs)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise ProgramError(f"{name} exited with {proc.returncode} while starting:\n{self.log_tail(name)}")
                if self._healthy(name):
                    self.started_s[name] = time.monotonic() - self.started_s[name]
                    waiting.discard(name)
            time.sleep(0.25)
        if waiting:
            raise ProgramError(f"not healthy within {timeout:.0f} s: {', '.join(sorted(waiting))}\n"
                               + "\n".join(self.log_tail(name) for name in sorted(waiting)))

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a program's log (its path first)."""
        path = self.work / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return "\n".join([f"{path}:", *text])

    def rss_kib(self) -> dict[str, int]:
        """Resident memory of each running program in KiB."""
        return rss_kib(self.procs)

    def stop(self, grace: float = STOP_TIMEOUT) -> None:
        """End every program (SIGTERM to its process group, SIGKILL after `grace` seconds)."""
        for name in list(self.procs):
            end_group(self.procs.pop(name), grace)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def controller_manager_argv(api: ApiServer, binary: Path, port: int, controllers: str) -> list[str]:
    """kube-controller-manager against `api` with the cluster's service-account key and CA, leader election off,
    its secure port on loopback `port`; `controllers` as its --controllers flag."""
    return [str(binary), f"--kubeconfig={api.kubeconfig}", f"--service-account-private-key-file={api.pki.service_key}",
            f"--root-ca-file={api.pki.server_ca}", "--use-service-account-credentials=false", "--leader-elect=false",
            f"--controllers={controllers}", "--bind-address=127.0.0.1", f"--secure-port={port}"]
