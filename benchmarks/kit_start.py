"""Start-up of `./kit` as whole processes, against the imports any CLI of this kind pays, measured in the same run.

    .venv/bin/python benchmarks/kit_start.py [--runs 15]

Baseline: `python -c "import invoke, rich, paramiko, yaml, pydantic"`. Measured: `./kit --list` and
`./kit --help edge.bootstrap` (the shell wrapper included, as a user runs it). The runs alternate between
baseline and measured command so a busy machine slows both alike; figures are medians.
Target: `./kit --list` at most 1.3x the baseline. The last line printed is a JSON object.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
TARGET_RATIO = 1.3
BASELINE = [PYTHON, "-c", "import invoke, rich, paramiko, yaml, pydantic"]
COMMANDS = {"./kit --list": [str(ROOT / "kit"), "--list"],
            "./kit --help edge.bootstrap": [str(ROOT / "kit"), "--help", "edge.bootstrap"]}


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    for command in (BASELINE, *COMMANDS.values()):  # warm the page cache and .pyc files once
        seconds(command)
    samples: dict[str, list[float]] = {"baseline": [], **{name: [] for name in COMMANDS}}
    for _ in range(args.runs):
        samples["baseline"].append(seconds(BASELINE))
        for name, command in COMMANDS.items():
            samples[name].append(seconds(command))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {name: medians[name] / medians["baseline"] for name in COMMANDS}
    print(f"baseline  python -c 'import invoke, rich, paramiko, yaml, pydantic'  {medians['baseline']:.3f} s")
    for name in COMMANDS:
        print(f"{name:<40} {medians[name]:.3f} s  {ratios[name]:.2f}x")
    met = ratios["./kit --list"] <= TARGET_RATIO
    print(f"./kit --list / baseline: {ratios['./kit --list']:.2f}x (target <= {TARGET_RATIO}x): "
          f"{'met' if met else 'MISSED'}")
    print(json.dumps({"runs": args.runs, "baseline_s": round(medians["baseline"], 4),
                      **{name: round(medians[name], 4) for name in COMMANDS},
                      "list_ratio": round(ratios["./kit --list"], 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
