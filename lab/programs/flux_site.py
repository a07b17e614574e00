"""A lab site's fleet engine: the real Flux Operator and Flux controllers (the builds of build.py FLUX) and
kube-controller-manager, as host processes against one ApiServer, on loopback ports, with per-site storage.

    with FluxSite.start(api, work_dir) as site:     # CRDs installed, every program healthy when it returns
        site.events_url, site.log_tail("kustomize-controller")

Out of cluster as /tmp/gotools/FINDINGS.md found them to run (docs/lab.md "Flux programs"): KUBECONFIG (the
operator has no --kubeconfig flag: controller-runtime GetConfigOrDie), leader election off, each its own
--metrics-addr/--health-addr (all default to :8080/:9440), GODEBUG=fips140=on for the operator (it refuses
non-FIPS mode; upstream builds with GOFIPS140=latest). source-controller serves artifacts on --storage-adv-addr,
which kustomize-controller downloads from; source- and kustomize-controller post their events to the
notification-controller's --events-addr (the in-cluster manifests pass --events-addr=http://notification-controller.
flux-system.svc.cluster.local./, flux2 v2.9.4 manifests/bases/*/deployment.yaml).

The CRDs come from the same module versions the binaries are built from, as `go mod download` checked them
against the tools modules' go.sum: each controller module's config/crd/bases, the operator's from the module copy
build.py made. kube-controller-manager turns Deployments into ReplicaSets and sets their status (what the
Kustomization's health checks read); there is no kubelet, so a Pod never runs.
"""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lab.programs.apiserver import ApiServer, end_group, free_port
from lab.programs.build import FLUX, KUBERNETES, MODULE_DIR, BuildError, _go, ensure_programs, pinned_version

NAMESPACE = "flux-system"
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0
CONTROLLERS = ("source-controller", "kustomize-controller", "notification-controller")


class FluxSiteError(RuntimeError):
    """A program did not start or become healthy; the message carries the end of its log."""


def crd_files(programs: tuple = FLUX, root: Path = MODULE_DIR) -> list[Path]:
    """Every CRD file of the Flux programs at their pinned versions (from the go.sum-verified module sources)."""
    files = []
    for program in programs:
        if program.web_stub:  # built from a copy of its module: build.py _web_stub_module
            src = ensure_programs(programs=(program,))[program.name].with_name("module") / "src"
        else:
            version = pinned_version(program, root)
            done = subprocess.run([_go(), "mod", "download", "-json", f"{program.module}@{version}"],
                                  cwd=root / program.folder, capture_output=True, text=True)
            if done.returncode != 0:
                raise BuildError(f"go mod download {program.module}@{version}: {done.stdout}{done.stderr}")
            src = Path(json.loads(done.stdout)["Dir"])
        files += sorted((src / "config" / "crd" / "bases").glob("*.yaml"))
    return files


@dataclass
class FluxSite:
    """The running programs of one site; `stop()` (or leaving the `with`) ends them all."""

    api: ApiServer
    work: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    started_s: dict[str, float] = field(default_factory=dict)  # seconds from spawn to healthy, per program

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['events']}/"

    @classmethod
    def start(cls, api: ApiServer, work: Path, kubectl: Path | None = None,
              ready_timeout: float = READY_TIMEOUT) -> "FluxSite":
        """Install the CRDs and the namespace, start every program, wait until each answers /readyz."""
        work.mkdir(parents=True, exist_ok=True, mode=0o700)
        binaries = ensure_programs(programs=FLUX + KUBERNETES)
        site = cls(api, work, {name: free_port() for name in ("events", "storage", "receiver")})
        (work / "source-storage").mkdir(exist_ok=True, mode=0o700)  # source-controller refuses a missing one
        site._install(Path(kubectl or binaries["kubectl"]))
        try:
            for name, argv in site._commands(binaries).items():
                site._spawn(name, argv)
            site._wait_healthy(ready_timeout)
        except BaseException:
            site.stop(grace=2.0)
            raise
        return site

    def _install(self, kubectl: Path) -> None:
        args = [str(kubectl), f"--kubeconfig={self.api.kubeconfig}", "apply", "--server-side", "-f", "-"]
        manifests = "\n---\n".join(p.read_text() for p in crd_files())
        manifests += f"\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n"
        done = subprocess.run(args, input=manifests, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise FluxSiteError(f"applying the Flux CRDs failed: {done.stderr.strip()[-1500:]}")
        subprocess.run([str(kubectl), f"--kubeconfig={self.api.kubeconfig}", "wait", "--for=condition=Established",
                        "--timeout=60s", "crd", "--all"], capture_output=True, text=True, timeout=90, check=True)

    def _health(self, name: str) -> tuple[str, str]:
        """(--health-addr flag, --metrics-addr flag) of a program, on its own free ports."""
        self.ports[f"{name}-health"] = free_port()
        return (f"--health-addr=127.0.0.1:{self.ports[f'{name}-health']}", f"--metrics-addr=127.0.0.1:{free_port()}")

    def _commands(self, binaries: dict[str, Path]) -> dict[str, list[str]]:
        common = ["--enable-leader-election=false", "--log-encoding=json"]
        events = f"--events-addr={self.events_url}"
        storage = f"127.0.0.1:{self.ports['storage']}"
        operator_data = binaries["flux-operator"].with_name("module") / "src" / "config" / "data"
        kcm_port = free_port()
        self.ports["kube-controller-manager-health"] = kcm_port
        return {
            "kube-controller-manager": [
                str(binaries["kube-controller-manager"]), f"--kubeconfig={self.api.kubeconfig}",
                f"--service-account-private-key-file={self.api.pki.service_key}",
                f"--root-ca-file={self.api.pki.server_ca}", "--use-service-account-credentials=false",
                "--leader-elect=false", "--controllers=*,-nodeipam,-nodelifecycle", "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}"],
            "notification-controller": [
                str(binaries["notification-controller"]), *common, *self._health("notification-controller"),
                f"--events-addr=127.0.0.1:{self.ports['events']}",
                f"--receiverAddr=127.0.0.1:{self.ports['receiver']}"],
            "source-controller": [
                str(binaries["source-controller"]), *common, *self._health("source-controller"), events,
                f"--storage-path={self.work / 'source-storage'}", f"--storage-addr={storage}",
                f"--storage-adv-addr={storage}"],
            "kustomize-controller": [
                str(binaries["kustomize-controller"]), *common, *self._health("kustomize-controller"), events,
                "--no-remote-bases"],
            "flux-operator": [
                str(binaries["flux-operator"]), *common, *self._health("flux-operator"),
                f"--storage-path={operator_data}", "--web-server-port=0"],
        }

    def _spawn(self, name: str, argv: list[str]) -> None:
        env = dict(os.environ, KUBECONFIG=str(self.api.kubeconfig), RUNTIME_NAMESPACE=NAMESPACE)
        env.pop("KUBERNETES_SERVICE_HOST", None)  # out of cluster (the operator's entitlement checks)
        if name == "flux-operator":
            env["GODEBUG"] = "fips140=on"
        (self.work / f"{name}.data").mkdir(exist_ok=True)
        with open(os.open(self.work / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            self.procs[name] = subprocess.Popen(["nice", "-n", "10", *argv], stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=log, env=env, cwd=self.work / f"{name}.data",
                                                start_new_session=True)
        self.started_s[name] = time.monotonic()

    def _healthy(self, name: str) -> bool:
        port = self.ports[f"{name}-health"]
        if name == "kube-controller-manager":  # /healthz on its secure port, open to anonymous by default
            url, context = f"https://127.0.0.1:{port}/healthz", ssl._create_unverified_context()
        else:
            url, context = f"http://127.0.0.1:{port}/readyz", None
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                return answer.status == 200
        except OSError:
            return False

    def _wait_healthy(self, timeout: float) -> None:
        deadline, waiting = time.monotonic() + timeout, set(self.procs)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise FluxSiteError(f"{name} exited with {proc.returncode} while starting:\n{self.log_tail(name)}")
                if self._healthy(name):
                    self.started_s[name] = time.monotonic() - self.started_s[name]
                    waiting.discard(name)
            time.sleep(0.25)
        if waiting:
            raise FluxSiteError(f"not healthy within {timeout:.0f} s: {', '.join(sorted(waiting))}\n"
                                + "\n".join(self.log_tail(name) for name in sorted(waiting)))

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a program's log (its path first)."""
        path = self.work / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return "\n".join([f"{path}:", *text])

    def stop(self, grace: float = STOP_TIMEOUT) -> None:
        """End every program (SIGTERM to its process group, SIGKILL after `grace` seconds)."""
        for name in list(self.procs):
            end_group(self.procs.pop(name), grace)

    def __enter__(self) -> "FluxSite":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
