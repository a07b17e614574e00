"""The kit's MetalLB step (edge_hosts/steps/metallb.py ensure_metallb, over real SSH to the first server of a 3-host
lab) against the real control plane with MetalLB's real controller (lab/programs/control_plane.py, metallb.py
run_as_pod), and, the baseline, against the lab's k3s stand-in in the same run; with each cluster's start and the
real programs' resident memory. Runs the scenario of tests/lab/metallb_step.py (its checks included). Needs root.

    .venv/bin/python benchmarks/lab_metallb_step.py [--runs 3]

Figures are medians; the last line printed is a JSON object.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Lab  # noqa: E402
from lab.lifecycle.packages import ensure_packages  # noqa: E402
from lab.programs.build import NODES, pinned_version  # noqa: E402
from lab.programs.control_plane import RealControlPlane  # noqa: E402
from lab.programs.metallb import MetallbController  # noqa: E402
from lab.releases.upstream import kwok_stages  # noqa: E402
from tests.lab import metallb_step  # noqa: E402
from tests.lab.test_standins import server_and_agents  # noqa: E402

TIMINGS = {"node_ready": 0.5, "heartbeat": 1.0, "retry": 0.3}  # the stand-in test's (tests/lab/test_k3s_metallb_standin.py)


def timed(action):
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def stand_in_run(work: Path) -> dict:
    lab = Lab.up(hosts=3, servers=1, out_dir=work / "lab", timings=TIMINGS)
    try:
        cluster_s, _ = timed(lambda: server_and_agents(lab))
        step_s, log = timed(lambda: metallb_step.install_metallb(lab))
    finally:
        lab.down()
    return {"standin_cluster_s": cluster_s, "standin_step_s": step_s,
            "standin_refusals": len(metallb_step.webhook_refusals(log))}


def real_run(work: Path) -> dict:
    lab = Lab.up(hosts=3, servers=1, out_dir=work / "lab")
    try:
        cluster_s, plane = timed(lambda: RealControlPlane.start(lab, work / "plane", kwok_stages(pinned_version(NODES[1]))))
        with plane, ThreadPoolExecutor(1) as kubelet:
            controller = kubelet.submit(MetallbController.run_as_pod, plane.api, work / "metallb", lab.bridge)
            try:
                step_s, log = timed(lambda: metallb_step.install_metallb(lab))
                rss = {**plane.rss_kib(), **controller.result().rss_kib()}
            finally:
                if controller.exception() is None:
                    controller.result().stop()
    finally:
        lab.down()
    return {"real_cluster_s": cluster_s, "real_step_s": step_s,
            "real_refusals": len(metallb_step.webhook_refusals(log)), "real_rss_mib": sum(rss.values()) / 1024,
            **{f"rss_mib {name}": kib / 1024 for name, kib in rss.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ensure_packages()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as work:
            runs.append({**stand_in_run(Path(work) / "standin"), **real_run(Path(work) / "real")})
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(f"baseline  stand-in: server + 2 agents Ready       {med['standin_cluster_s']:.2f} s")
    print(f"          stand-in: the MetalLB step               {med['standin_step_s']:.2f} s  "
          f"({med['standin_refusals']:.0f} webhook refusals)")
    print(f"real control plane: start, 3 nodes Ready           {med['real_cluster_s']:.2f} s  "
          f"{med['real_cluster_s'] / med['standin_cluster_s']:.1f}x")
    print(f"real control plane: the MetalLB step               {med['real_step_s']:.2f} s  "
          f"{med['real_step_s'] / med['standin_step_s']:.1f}x  ({med['real_refusals']:.0f} webhook refusals)")
    print(f"real programs' RSS                                 {med['real_rss_mib']:.0f} MiB  " + ", ".join(
        f"{k.split(' ', 1)[1]} {v:.0f}" for k, v in med.items() if k.startswith("rss_mib ")))
    print(json.dumps({"runs": args.runs, **{k: round(v, 3) for k, v in med.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
