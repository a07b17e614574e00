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
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.programs.apiserver import ApiServer, free_port
from lab.programs.build import FLUX, KUBERNETES, MODULE_DIR, BuildError, _go, ensure_programs, pinned_version
from lab.programs.group import ProgramError, ProgramGroup, controller_manager_argv

NAMESPACE = "flux-system"
READY_TIMEOUT = 120.0
CONTROLLERS = ("source-controller", "kustomize-controller", "notification-controller")


class FluxSiteError(ProgramError):
    """The Flux CRDs could not be installed."""


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
class FluxSite(ProgramGroup):
    """The running programs of one site; `stop()` (or leaving the `with`) ends them all."""

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
            site.wait_healthy(ready_timeout)
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
            "kube-controller-manager": controller_manager_argv(
                self.api, binaries["kube-controller-manager"], kcm_port, "*,-nodeipam,-nodelifecycle"),
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
        port = self.ports[f"{name}-health"]
        if name == "kube-controller-manager":
            url = f"https://127.0.0.1:{port}/healthz"
        else:
            url = f"http://127.0.0.1:{port}/readyz"
        env = {"RUNTIME_NAMESPACE": NAMESPACE, **({"GODEBUG": "fips140=on"} if name == "flux-operator" else {})}
        self.spawn(name, argv, url, env)
