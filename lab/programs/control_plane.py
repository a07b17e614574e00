"""A lab site's control plane from the real programs, where its first server's k3s would serve one: kube-apiserver and
etcd on the lab bridge's gateway (apiserver.py), kube-controller-manager, kube-scheduler and kwok's Nodes named after
the lab's hosts (nodes.py), and on the first server a `k3s kubectl` that is the real kubectl against it with k3s's
kubeconfig path (lab/standins/k3s-kubectl; the binary, 0755, and /etc/rancher/k3s/k3s.yaml, 0600, in the host's own
/usr/local/bin and /etc/rancher).

    stages = lab.releases.upstream.kwok_stages(pinned_version(NODES[1]))
    with RealControlPlane.start(lab, work_dir, stages) as plane:   # every node Ready when it returns
        plane.api, plane.rss_kib()

So the kit's steps run over real SSH against real API objects, validation and controllers. The programs run in the
machine's own network namespace; nothing of k3s itself (install.sh, units, tokens) is on the hosts. The caller passes
kwok's stages (lab/releases imports this package).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.hosts.host import LabHost
from lab.programs.apiserver import ApiServer
from lab.programs.build import KUBERNETES, NODES, ensure_programs
from lab.programs.nodes import LabNodes

K3S_KUBECTL = Path(__file__).parents[1] / "standins" / "k3s-kubectl"
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"


@dataclass
class RealControlPlane:
    """The running programs; `stop()` (or leaving the `with`) ends them."""

    api: ApiServer
    nodes: LabNodes
    kubectl: Path  # the real kubectl binary

    @classmethod
    def start(cls, lab, work: Path, stages: list[bytes], server: str = "edge-1") -> "RealControlPlane":
        """Start the programs for `lab` (a lab.Lab), its hosts as Ready Nodes looked after by kwok with `stages`, and
        `server`'s `k3s kubectl`."""
        kubectl = ensure_programs(programs=KUBERNETES + NODES)["kubectl"]
        api = ApiServer.start(work / "api", address=lab.gateway)
        try:
            nodes = LabNodes.start(api, work / "nodes", [h.name for h in lab.hosts], stages)
        except BaseException:
            api.stop(grace=2.0)
            raise
        plane = cls(api, nodes, kubectl)
        host = lab.host(server)
        _put(host, "/usr/local/bin/kubectl", kubectl, 0o755)
        _put(host, "/usr/local/bin/k3s", K3S_KUBECTL, 0o755)
        _put(host, KUBECONFIG, api.kubeconfig, 0o600)
        return plane

    def rss_kib(self) -> dict[str, int]:
        """Resident memory of each program in KiB."""
        return {**self.api.rss_kib(), **self.nodes.rss_kib()}

    def stop(self) -> None:
        self.nodes.stop()
        self.api.stop()

    def __enter__(self) -> "RealControlPlane":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _put(host: LabHost, path: str, source: Path, mode: int) -> None:
    target = host.path_on_host(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)
