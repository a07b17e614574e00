"""Edge fleet timings on a lab (run as root): full bootstrap, no-op re-run, and the baseline measured in the same
run, a bare parallel paramiko connect + `true` to the same hosts. Target: no-op re-run within 1.5x the baseline.

    .venv/bin/python benchmarks/edge_fleet.py [--hosts 10] [--parallel 10] [--runs 3]

Two modes, both measured, each against its own baseline: in-process (the Bootstrap class against connections
opened from this interpreter) and whole-process, as a user runs it: `./kit edge.bootstrap SITE` against a fresh
`python -c` that imports paramiko, connects to every host and runs `true` (interpreter start-up and imports
included on both sides). The last line printed is a JSON object with bootstrap_s and, per mode, the medians.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_hosts.inventory.load import load_inventory
from edge_hosts.engine.progress import Progress
from edge_hosts.bootstrap.runner import Bootstrap
from lab import Lab, cleanup_stale  # noqa: E402
from lab.lifecycle.packages import ensure_packages  # noqa: E402

TARGET_RATIO = 1.5
ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
# The whole-process baseline: a fresh interpreter, paramiko, one verified connection and `true` per host.
FAN_OUT = """
import sys
from concurrent.futures import ThreadPoolExecutor
import paramiko
known_hosts, key_file, *addresses = sys.argv[1:]
def one(address):
    client = paramiko.SSHClient()
    client.load_system_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(address, username="root", key_filename=key_file, look_for_keys=False, allow_agent=False,
                   timeout=10)
    _, out, _ = client.exec_command("true")
    assert out.channel.recv_exit_status() == 0
    client.close()
with ThreadPoolExecutor(max_workers=len(addresses)) as pool:
    list(pool.map(one, addresses))
"""


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


def whole_process_fan_out(lab: Lab) -> float:
    """Seconds for a fresh `python -c` to import paramiko, connect to every host, run `true` and exit."""
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", FAN_OUT, str(lab.known_hosts), str(lab.key_file),
                    *[str(h.address) for h in lab.hosts]], check=True)
    return time.perf_counter() - started


def whole_process_rerun(lab: Lab, parallel: int, kubeconfig: Path) -> float:
    """Seconds for `./kit edge.bootstrap SITE --json` as a user runs it; exits non-zero unless nothing changed."""
    started = time.perf_counter()
    done = subprocess.run([str(ROOT / "kit"), "edge.bootstrap", str(lab.site_file), "--parallel", str(parallel),
                           "--json", "--kubeconfig", str(kubeconfig)], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    statuses = {h["status"] for h in json.loads(done.stdout)["hosts"]} if done.returncode == 0 else {"failed"}
    if statuses != {"ok"}:
        raise SystemExit(f"a whole-process re-run was not a no-op: {done.stdout[-500:]} {done.stderr[-500:]}")
    return seconds


def bootstrap(lab: Lab, parallel: int, kubeconfig: Path) -> tuple[float, list]:
    inventory = load_inventory(str(lab.site_file))
    names = [h.name for h in inventory.hosts]
    started = time.perf_counter()
    results = Bootstrap(inventory, names, parallel, Progress(names, enabled=False), kubeconfig).run()
    return time.perf_counter() - started, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10)
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
            samples = {"in-process": ([], []), "whole-process": ([], [])}
            for _ in range(args.runs):  # alternated, so a busy machine slows every series alike
                samples["in-process"][1].append(bare_connect_true(lab, parallel))
                seconds, results = bootstrap(lab, parallel, Path(tmp, "kubeconfig"))
                busy = [r for r in results if r.status != "ok"]
                if busy:
                    first = busy[0]
                    print(f"a re-run was not a no-op: {first.name} {first.status}: {first.changed} {first.error}")
                    return 1
                samples["in-process"][0].append(seconds)
                samples["whole-process"][1].append(whole_process_fan_out(lab))
                samples["whole-process"][0].append(whole_process_rerun(lab, parallel, Path(tmp, "kubeconfig")))
        finally:
            lab.down()
    print(f"hosts: {args.hosts} (1 server), parallel: {parallel}")
    print(f"full bootstrap:                     {bootstrap_s:7.2f} s")
    figures = {"hosts": args.hosts, "parallel": parallel, "bootstrap_s": round(bootstrap_s, 3)}
    for mode, (reruns, baselines) in samples.items():
        figures[mode] = report(mode, reruns, baselines)
    print(json.dumps(figures))
    return 0


def report(mode: str, reruns: list[float], baselines: list[float]) -> dict:
    """Print one mode's medians and ratio; return them for the JSON line."""
    rerun_s, baseline_s = statistics.median(reruns), statistics.median(baselines)
    ratio = rerun_s / baseline_s
    print(f"{mode}: no-op re-run (median of {len(reruns)}) {rerun_s:6.2f} s   runs: "
          + ", ".join(f"{s:.2f}" for s in reruns))
    print(f"{mode}: baseline connect+true (median) {baseline_s:6.2f} s   runs: "
          + ", ".join(f"{s:.2f}" for s in baselines))
    print(f"{mode}: re-run / baseline: {ratio:.2f}x (target <= {TARGET_RATIO}x): "
          f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}")
    return {"rerun_s": round(rerun_s, 3), "baseline_s": round(baseline_s, 3), "ratio": round(ratio, 3)}


if __name__ == "__main__":
    sys.exit(main())
