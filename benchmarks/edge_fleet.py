"""Edge fleet timings on a lab (run as root): full bootstrap, no-op re-run, and the baseline measured in the same
run, a bare parallel paramiko connect + `true` to the same hosts. Target: no-op re-run within 1.5x the baseline.

    .venv/bin/python benchmarks/edge_fleet.py [--hosts 20] [--parallel 20] [--runs 3]

The last line printed is a JSON object with bootstrap_s, rerun_s and baseline_s (medians for the last two).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_hosts.inventory import load_inventory  # noqa: E402
from edge_hosts.report import Progress  # noqa: E402
from edge_hosts.runner import Bootstrap  # noqa: E402
from lab import Lab, cleanup_stale  # noqa: E402
from lab.packages import ensure_packages  # noqa: E402

TARGET_RATIO = 1.5


def bare_connect_true(lab: Lab, parallel: int) -> float:
    """Seconds to open a verified paramiko connection to every host, run `true`, and close, in parallel."""
    def one(address: str) -> None:
        client = paramiko.SSHClient()
        client.load_system_host_keys(str(lab.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(address, username="root", key_filename=str(lab.key_file), look_for_keys=False,
                       allow_agent=False, timeout=10)
        _, out, _ = client.exec_command("true")
        out.channel.recv_exit_status()
        client.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, [h.address for h in lab.hosts]))
    return time.perf_counter() - started


def bootstrap(lab: Lab, parallel: int, kubeconfig: Path) -> tuple[float, list]:
    inventory = load_inventory(str(lab.site_file))
    names = [h.name for h in inventory.hosts]
    started = time.perf_counter()
    results = Bootstrap(inventory, names, parallel, Progress(names, enabled=False), kubeconfig).run()
    return time.perf_counter() - started, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=None, help="bootstrap concurrency (default: --hosts)")
    parser.add_argument("--runs", type=int, default=3, help="re-runs and baselines measured (median reported)")
    args = parser.parse_args()
    parallel = args.parallel or args.hosts
    ensure_packages()
    cleanup_stale()
    with tempfile.TemporaryDirectory(prefix="edge-fleet-") as tmp:
        os.environ["XDG_CONFIG_HOME"] = str(Path(tmp, "xdg"))
        lab = Lab.up(hosts=args.hosts, servers=1, out_dir=Path(tmp, "lab"))
        try:
            bootstrap_s, results = bootstrap(lab, parallel, Path(tmp, "kubeconfig"))
            failed = [r for r in results if r.status == "failed"]
            if failed:
                print(f"bootstrap failed on {len(failed)} host(s): {failed[0].name}: {failed[0].error}")
                return 1
            reruns, baselines = [], []
            for _ in range(args.runs):
                baselines.append(bare_connect_true(lab, parallel))
                seconds, results = bootstrap(lab, parallel, Path(tmp, "kubeconfig"))
                if any(r.status != "ok" for r in results):
                    print("a re-run changed something: not a no-op")
                    return 1
                reruns.append(seconds)
        finally:
            lab.down()
    rerun_s, baseline_s = statistics.median(reruns), statistics.median(baselines)
    ratio = rerun_s / baseline_s
    print(f"hosts: {args.hosts} (1 server), parallel: {parallel}")
    print(f"full bootstrap:                     {bootstrap_s:7.2f} s")
    print(f"no-op re-run (median of {args.runs}):        {rerun_s:7.2f} s   runs: "
          + ", ".join(f"{s:.2f}" for s in reruns))
    print(f"baseline connect+true (median):     {baseline_s:7.2f} s   runs: "
          + ", ".join(f"{s:.2f}" for s in baselines))
    print(f"re-run / baseline: {ratio:.2f}x (target <= {TARGET_RATIO}x): {'met' if ratio <= TARGET_RATIO else 'MISSED'}")
    print(json.dumps({"hosts": args.hosts, "parallel": parallel, "bootstrap_s": round(bootstrap_s, 3),
                      "rerun_s": round(rerun_s, 3), "baseline_s": round(baseline_s, 3), "ratio": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
