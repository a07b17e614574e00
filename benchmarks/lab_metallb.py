"""The lab's real MetalLB controller v0.16.1 (lab/programs/metallb.py) against the lab's real API server: from its
start to the webhook's first answer through kube-apiserver, a pool judged by the webhook, and its memory, beside
the API server's own start to /readyz (the baseline) measured in the same run.

    .venv/bin/python benchmarks/lab_metallb.py [--runs 3]

Figures are medians; the last line printed is a JSON object.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.programs.apiserver import ApiServer  # noqa: E402
from lab.programs.metallb import MetallbController  # noqa: E402
from lab.releases.upstream import metallb_manifest  # noqa: E402

POOL = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "bench", "namespace": "metallb-system"}, "spec": {"addresses": ["10.9.0.200-10.9.0.210"]}}


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


def one_run(manifest: bytes) -> dict:
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        with ApiServer.start(Path(work) / "api") as api:
            api_ready = time.perf_counter() - started
            started = time.perf_counter()
            with MetallbController.start(api, Path(work) / "metallb", manifest) as metallb:
                answering = time.perf_counter() - started
                started = time.perf_counter()
                done = metallb.kubectl_run("apply", "--server-side", "--dry-run=server", "-f", "-",
                                           stdin=yaml.safe_dump(POOL))
                judged = time.perf_counter() - started
                assert done.returncode == 0, done.stderr
                return {"api_ready_s": api_ready, "answering_s": answering, "pool_judged_s": judged,
                        "rss_kib": rss_kib(metallb.proc.pid)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    manifest = metallb_manifest("v0.16.1")
    runs = [one_run(manifest) for _ in range(args.runs)]
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(f"baseline  etcd + kube-apiserver start to /readyz ok   {med['api_ready_s']:.2f} s")
    print(f"MetalLB controller start to its webhook's answer     {med['answering_s']:.2f} s  "
          f"{med['answering_s'] / med['api_ready_s']:.1f}x")
    print(f"a pool judged through the webhook (kubectl dry run)  {med['pool_judged_s']:.3f} s")
    print(f"controller RSS                                       {med['rss_kib'] / 1024:.0f} MiB")
    print(json.dumps({"runs": args.runs, **{k: round(v, 3) for k, v in med.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
