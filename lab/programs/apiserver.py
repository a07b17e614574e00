"""A real Kubernetes API server for one lab cluster: etcd and kube-apiserver (the builds of lab/programs/build.py) as
host processes on loopback ports, with k3s-like certificates (pki.py) and an admin kubeconfig (0600).

    with ApiServer.start(work_dir) as api:      # ready when it returns (/readyz answered ok)
        api.kubeconfig, api.url, api.rss_kib()

Flags as k3s passes them where they matter here (k3s pkg/daemons/control/server.go apiServer(): anonymous-auth and
profiling off, Node,RBAC, NodeRestriction, allow-privileged, service-cidr 10.43.0.0/16, the issuer and audiences
https://kubernetes.default.svc.cluster.local,k3s, the service key as verifying and signing key), plus
--endpoint-reconciler-type=none, without which a loopback --advertise-address is refused ("cannot use public IP
127.0.0.1 with endpoint reconciler"), and --enable-aggregator-routing: the lab runs no
kube-proxy, which on k3s routes a Service's ClusterIP to its pods, so the API server calls a webhook's Service at its
EndpointSlices' pod addresses instead (k8s.io/kubernetes v1.37.2 cmd/kube-apiserver/app/server.go
buildServiceResolver: NewEndpointServiceResolver, the resolver admission webhooks and CRD conversion use).

It serves on loopback, or on `address` (the lab bridge's gateway, for lab hosts to reach it).
"""
from __future__ import annotations

import base64
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from common.files import atomic_write
from lab.programs.build import KUBERNETES, ensure_programs
from lab.programs.pki import Pki, make_pki

SERVICE_CIDR = "10.43.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0


class ApiServerError(RuntimeError):
    """etcd or kube-apiserver did not start or become ready; the message carries the end of its log."""


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now at `address` (loopback by default)."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


@dataclass
class ApiServer:
    """A running etcd + kube-apiserver pair; `stop()` (or leaving the `with`) ends both and frees their ports."""

    work: Path
    pki: Pki
    port: int
    etcd_url: str
    address: str = "127.0.0.1"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.work / "kubeconfig"

    @classmethod
    def start(cls, work: Path, sans: tuple[str, ...] = (), etcd_url: str = "", address: str = "127.0.0.1",
              ready_timeout: float = READY_TIMEOUT) -> "ApiServer":
        """Make the certificates, start etcd (unless `etcd_url` names one) and kube-apiserver on `address`, wait until
        ready."""
        work.mkdir(parents=True, exist_ok=True, mode=0o700)
        programs = ensure_programs(programs=KUBERNETES)
        api = cls(work, make_pki(work / "tls", (*sans, address)), free_port(address), etcd_url, address)
        try:
            if not etcd_url:
                api.etcd_url = api._start_etcd(programs["etcd"])
            api._spawn("kube-apiserver", [str(programs["kube-apiserver"]), *api._apiserver_flags()])
            api._write_kubeconfig()
            api._wait_ready(ready_timeout)
        except BaseException:
            api.stop(grace=2.0)  # an apiserver still waiting for its storage ignores SIGTERM
            raise
        return api

    def _start_etcd(self, binary: Path) -> str:
        client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        self._spawn("etcd", [str(binary), "--name", "lab", "--data-dir", str(self.work / "etcd"),
                             "--listen-client-urls", client, "--advertise-client-urls", client,
                             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                             "--initial-cluster", f"lab={peer}", "--log-level", "warn"])
        return client

    def _apiserver_flags(self) -> list[str]:
        p = self.pki
        return [f"--etcd-servers={self.etcd_url}", f"--bind-address={self.address}", f"--secure-port={self.port}",
                f"--advertise-address={self.address}", "--endpoint-reconciler-type=none", "--anonymous-auth=false",
                "--enable-aggregator-routing=true",
                f"--tls-cert-file={p.serving_cert}", f"--tls-private-key-file={p.serving_key}",
                f"--client-ca-file={p.client_ca}", "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={ISSUER}", f"--api-audiences={ISSUER},k3s",
                "--enable-admission-plugins=NodeRestriction", "--allow-privileged=true",
                f"--service-account-key-file={p.service_key}", f"--service-account-signing-key-file={p.service_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false"]

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(os.open(self.work / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            self.procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                start_new_session=True)

    def _write_kubeconfig(self) -> None:
        def data(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {"apiVersion": "v1", "kind": "Config", "current-context": "lab", "preferences": {},
                  "clusters": [{"name": "lab", "cluster": {"server": self.url,
                                                           "certificate-authority-data": data(self.pki.server_ca)}}],
                  "users": [{"name": "admin", "user": {"client-certificate-data": data(self.pki.admin_cert),
                                                       "client-key-data": data(self.pki.admin_key)}}],
                  "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin"}}]}
        atomic_write(self.kubeconfig, yaml.safe_dump(config, sort_keys=False), 0o600)

    def kubectl(self, binary: Path, *args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
        """The real kubectl `binary` as this server's admin (not checked)."""
        return subprocess.run([str(binary), f"--kubeconfig={self.kubeconfig}", *args], input=stdin,
                              capture_output=True, text=True, timeout=timeout)

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.server_ca))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def _wait_ready(self, timeout: float) -> None:
        deadline, last = time.monotonic() + timeout, "no answer yet"
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ApiServerError(f"{name} exited with {proc.returncode} while starting:\n{self.log_tail(name)}")
            try:
                wait = max(0.1, min(5.0, deadline - time.monotonic()))
                with urllib.request.urlopen(f"{self.url}/readyz", context=self._tls(), timeout=wait) as answer:
                    if answer.read() == b"ok":
                        return
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}: {err.read().decode(errors='replace').strip()[-600:]}"
            except OSError as err:
                last = str(err)
            time.sleep(0.25)
        raise ApiServerError(f"kube-apiserver at {self.url} was not ready within {timeout:.0f} s (etcd "
                             f"{self.etcd_url}); last /readyz: {last}\n{self.log_tail('kube-apiserver')}")

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a program's log (its path first)."""
        path = self.work / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return "\n".join([f"{path}:", *text])

    def rss_kib(self) -> dict[str, int]:
        """Resident memory of etcd and kube-apiserver in KiB."""
        return rss_kib(self.procs)

    def stop(self, grace: float = STOP_TIMEOUT) -> None:
        """End kube-apiserver, then etcd (SIGTERM, SIGKILL after `grace` seconds), with their process groups."""
        for name in ("kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                end_group(proc, grace)

    def __enter__(self) -> "ApiServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def rss_kib(procs: dict[str, subprocess.Popen]) -> dict[str, int]:
    """Resident memory of each running program in KiB (from /proc/<pid>/status VmRSS)."""
    sizes = {}
    for name, proc in procs.items():
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes[name] = int(line.split()[1])
    return sizes


def end_group(proc: subprocess.Popen, grace: float) -> None:
    """End a program and its process group: SIGTERM, then SIGKILL after `grace` seconds."""
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
