"""Wall time and peak memory of a cold `./kit plan --env prod`, against `python -c "import pulumi"` as the baseline.

Run: .venv/bin/python benchmarks/plan.py [--env prod] [--runs 5]
Each run is a fresh process (cold: nothing cached in the interpreter); figures are medians, peak memory is the
child's max RSS. Target on a 2-core machine: under 3 s and 300 MB.
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"


def measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one fresh child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak_kb, before) / 1024


def run_series(command: list[str], runs: int) -> dict[str, float]:
    samples = [measure(command) for _ in range(runs)]
    return {"wall_s": round(statistics.median(s[0] for s in samples), 3),
            "peak_mb": round(max(s[1] for s in samples), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="prod")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        # Baseline first: ru_maxrss of children is a high-water mark, so the smaller process must come first.
        baseline = run_series([str(VENV_BIN / "python"), "-c", "import pulumi"], args.runs)
        plan = run_series([str(ROOT / "kit"), "plan", "--env", args.env, "--out", out], args.runs)
    print(f"baseline  python -c 'import pulumi'   {baseline['wall_s']:.3f} s  {baseline['peak_mb']:.0f} MB")
    print(f"plan      ./kit plan --env {args.env:<8} {plan['wall_s']:.3f} s  {plan['peak_mb']:.0f} MB")
    print(f"target    under 3 s and 300 MB: {'met' if plan['wall_s'] < 3 and plan['peak_mb'] < 300 else 'NOT met'}")
    print(json.dumps({"env": args.env, "runs": args.runs, "plan_s": plan["wall_s"], "plan_peak_mb": plan["peak_mb"],
                      "baseline_s": baseline["wall_s"], "baseline_peak_mb": baseline["peak_mb"]}))


if __name__ == "__main__":
    sys.exit(main())
