"""What kubelets do, for a lab ApiServer: kube-controller-manager, kube-scheduler and kwok (the builds of build.py
KUBERNETES and NODES) as host processes against it, and the Nodes kwok looks after.

    stages = lab.releases.upstream.kwok_stages(pinned_version(NODES[1]))
    with LabNodes.start(api, work_dir, ["edge-1", "edge-2"], stages) as nodes:   # every node Ready when it returns
        ...   # Deployments roll out, PodDisruptionBudgets count, `kubectl drain` evicts: as on a real cluster

kwok (sigs.k8s.io/kwok v0.8.0) runs no container: with its upstream stages (the caller passes them: lab/releases
imports this package) it turns each Node made here Ready and renews its lease, and takes each Pod the scheduler binds
to Running and Ready, and away once deleted. It looks after Nodes annotated `kwok.x-k8s.io/node: fake` only
(--manage-nodes-with-annotation-selector). kube-controller-manager runs every controller but nodeipam, so node
lifecycle taints and the disruption controller's PodDisruptionBudget status are real; each Node is made with the pod
CIDR k3s's node IPAM would give it (10.42.N.0/24 in registration order, k3s's default cluster-cidr 10.42.0.0/16), from
which kwok hands its pods their addresses (kwok v0.8.0 pkg/kwok/controllers/pod_controller.go funcPodIPWith).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.programs.apiserver import ApiServer, free_port
from lab.programs.build import KUBERNETES, NODES, ensure_programs
from lab.programs.group import ProgramError, ProgramGroup, controller_manager_argv

READY_TIMEOUT = 120.0
MANAGED = {"kwok.x-k8s.io/node": "fake"}
LEASE_SECONDS = 40  # a kubelet's default node lease (kwokctl passes the same)
CAPACITY = {"cpu": "4", "memory": "8Gi", "pods": "110"}


class LabNodesError(ProgramError):
    """A node did not turn Ready in time."""


def node_object(name: str, index: int, arch: str = "amd64") -> dict:
    """The `index`th Node as a k3s kubelet registers it (hostname, os and arch labels), with the pod CIDR k3s would
    give it, for kwok to look after."""
    return {"apiVersion": "v1", "kind": "Node", "spec": {"podCIDR": f"10.42.{index}.0/24"},
            "metadata": {"name": name, "annotations": {**MANAGED, "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
                                    "beta.kubernetes.io/arch": arch}},
            "status": {"capacity": CAPACITY, "allocatable": CAPACITY}}


@dataclass
class LabNodes(ProgramGroup):
    """The running programs; `stop()` (or leaving the `with`) ends them (the Nodes stay in the API server)."""

    @classmethod
    def start(cls, api: ApiServer, work: Path, names: list[str], stages: list[bytes],
              ready_timeout: float = READY_TIMEOUT) -> "LabNodes":
        """Start the programs, create the Nodes, wait until every program is healthy and every Node Ready."""
        work.mkdir(parents=True, exist_ok=True, mode=0o700)
        binaries = ensure_programs(programs=KUBERNETES + NODES)
        nodes = cls(api, work)
        stages_file = work / "kwok-stages.yaml"
        stages_file.write_bytes(b"\n---\n".join(stages))
        try:
            for name, (argv, url) in nodes._commands(binaries, stages_file).items():
                nodes.spawn(name, argv, url)
            nodes.wait_healthy(ready_timeout)
            nodes.kubectl(binaries["kubectl"], "apply", "-f", "-",
                          stdin=yaml.safe_dump_all([node_object(n, i) for i, n in enumerate(names)]))
            nodes.kubectl(binaries["kubectl"], "wait", "--for=condition=Ready", f"--timeout={int(ready_timeout)}s",
                          *(f"node/{n}" for n in names))
        except BaseException:
            nodes.stop(grace=2.0)
            raise
        return nodes

    def _commands(self, binaries: dict[str, Path], stages: Path) -> dict[str, tuple[list[str], str]]:
        kcm, scheduler, kwok = free_port(), free_port(), free_port()
        config = f"--kubeconfig={self.api.kubeconfig}"
        return {
            "kube-controller-manager": (controller_manager_argv(
                self.api, binaries["kube-controller-manager"], kcm, "*,-nodeipam"), f"https://127.0.0.1:{kcm}/healthz"),
            "kube-scheduler": ([str(binaries["kube-scheduler"]), config, f"--authentication-kubeconfig="
                                f"{self.api.kubeconfig}", f"--authorization-kubeconfig={self.api.kubeconfig}",
                                "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={scheduler}"],
                               f"https://127.0.0.1:{scheduler}/healthz"),
            "kwok": ([str(binaries["kwok"]), config, f"--config={stages}", f"--server-address=127.0.0.1:{kwok}",
                      "--manage-nodes-with-annotation-selector=" + ",".join(f"{k}={v}" for k, v in MANAGED.items()),
                      f"--node-lease-duration-seconds={LEASE_SECONDS}"], f"http://127.0.0.1:{kwok}/healthz"),
        }

    def kubectl(self, binary: Path, *args: str, stdin: str = "") -> str:
        """The real kubectl as the cluster's admin; LabNodesError with its words when it fails."""
        done = self.api.kubectl(binary, *args, stdin=stdin, timeout=READY_TIMEOUT + 30)
        if done.returncode != 0:
            raise LabNodesError(f"kubectl {' '.join(args)}: {done.stderr.strip()[-1500:]}\n{self.log_tail('kwok')}")
        return done.stdout
