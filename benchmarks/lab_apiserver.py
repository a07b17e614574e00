"""The lab's real API server as whole processes: building its programs and starting etcd + kube-apiserver to ready,
against `kubectl version --client` (the real kubectl's own start) measured in the same run.

    .venv/bin/python benchmarks/lab_apiserver.py [--runs 3] [--cold]

Measured: `./kit lab.programs` reusing the cache; `./kit lab.programs` into an empty program cache, with this
machine's Go build cache (warm: the builds mostly link) or, with --cold, an empty one too (the module cache stays:
a fresh machine also downloads the modules); a whole process that starts etcd + kube-apiserver
(lab/programs/apiserver.py), waits for /readyz, reports RSS and stops. Go keeps its build cache under
$XDG_CACHE_HOME too, so the empty program cache's run names GOCACHE explicitly.
Figures are medians; the last line printed is a JSON object.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.programs.build import KUBERNETES, ensure_programs  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")
START = """
import json, sys, tempfile, time
from pathlib import Path
from lab.programs.apiserver import ApiServer
started = time.perf_counter()
with tempfile.TemporaryDirectory() as work:
    with ApiServer.start(Path(work) / "api") as api:
        ready = time.perf_counter() - started
        rss = api.rss_kib()
print(json.dumps({"ready_s": ready, "rss_kib": rss}))
"""


def seconds(command: list[str], env: dict | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, env=env)
    return time.perf_counter() - started, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="build with an empty Go build cache too (minutes)")
    args = parser.parse_args()
    kubectl = str(ensure_programs(programs=KUBERNETES)["kubectl"])
    gocache = subprocess.run(["go", "env", "GOCACHE"], check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache, GOCACHE=str(Path(cache) / "go-build") if args.cold else gocache)
        build_s, _ = seconds([str(ROOT / "kit"), "lab.programs"], env)
    samples: dict[str, list[float]] = {"baseline": [], "reuse": [], "start": [], "ready": []}
    rss: list[dict] = []
    for _ in range(args.runs):
        samples["baseline"].append(seconds([kubectl, "version", "--client"])[0])
        samples["reuse"].append(seconds([str(ROOT / "kit"), "lab.programs"])[0])
        whole, out = seconds([PYTHON, "-c", START])
        report = json.loads(out.splitlines()[-1])
        samples["start"].append(whole)
        samples["ready"].append(report["ready_s"])
        rss.append(report["rss_kib"])
    med = {name: statistics.median(values) for name, values in samples.items()}
    rss_med = {name: int(statistics.median(r[name] for r in rss)) for name in rss[0]}
    print(f"baseline  kubectl version --client               {med['baseline']:.3f} s")
    print(f"./kit lab.programs, empty program cache          {build_s:.1f} s "
          f"({'empty' if args.cold else 'warm'} Go build cache)")
    print(f"./kit lab.programs, reusing the cache            {med['reuse']:.3f} s  {med['reuse'] / med['baseline']:.1f}x")
    print(f"etcd + kube-apiserver start to /readyz ok        {med['ready']:.2f} s  {med['ready'] / med['baseline']:.0f}x")
    print(f"  the same whole process (start, ready, stop)    {med['start']:.2f} s")
    print(f"RSS at ready: kube-apiserver {rss_med['kube-apiserver'] / 1024:.0f} MiB, etcd {rss_med['etcd'] / 1024:.0f} MiB")
    print(json.dumps({"runs": args.runs, "go_build_cache": "empty" if args.cold else "warm",
                      "baseline_kubectl_client_s": round(med["baseline"], 3),
                      "build_empty_cache_s": round(build_s, 1), "reuse_s": round(med["reuse"], 3),
                      "ready_s": round(med["ready"], 2), "start_ready_stop_s": round(med["start"], 2),
                      "rss_kib": rss_med}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
