"""Wall time of `stack.reap` over expired ephemeral stacks, one at a time (the baseline) against in parallel.

Run: .venv/bin/python benchmarks/lifecycle_reap.py [--stacks 8] [--destroy-seconds 2] [--parallel 1 4 8]
Uses the tests' stand-in Pulumi CLI (a real Azure destroy takes minutes; the stand-in takes --destroy-seconds per
destroy), so the figures show what the reaper's own parallelism buys. Each series starts from a fresh backend.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.lifecycle.backend import resolve_backend  # noqa: E402
from infra.lifecycle.ephemeral import create_ephemeral, plan_ephemeral  # noqa: E402
from infra.lifecycle.reaper import REAPED, reap  # noqa: E402
from infra.lifecycle.workspace import open_workspace  # noqa: E402
from tests.lifecycle.standin.environment import UNSET, scratch_project, standin_environment  # noqa: E402


def reap_seconds(stacks: int, destroy_seconds: float, parallel: int) -> float:
    """Create `stacks` expired ephemeral stacks in a fresh scratch backend, then time one reap."""
    with tempfile.TemporaryDirectory(prefix="reap-bench-") as scratch:
        root = scratch_project(Path(scratch))
        for name in UNSET:
            os.environ.pop(name, None)
        os.environ.update(standin_environment(Path(scratch), os.environ["PATH"]))
        os.environ["STANDIN_OPERATION_SECONDS"] = "0"
        workspace = open_workspace(root, resolve_backend())
        past = datetime.now(timezone.utc) - timedelta(hours=2)
        for index in range(stacks):
            create_ephemeral(workspace, root, plan_ephemeral(f"bench-{index}", "1h", "qa", root, past), lambda _: None)
        os.environ["STANDIN_OPERATION_SECONDS"] = str(destroy_seconds)
        start = time.perf_counter()
        outcomes = reap(workspace, root, datetime.now(timezone.utc), dry_run=False, parallel=parallel)
        elapsed = time.perf_counter() - start
        assert sum(outcome.action == REAPED for outcome in outcomes) == stacks, outcomes
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=8)
    parser.add_argument("--destroy-seconds", type=float, default=2.0)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    saved = dict(os.environ)
    figures = {}
    for parallel in args.parallel:
        figures[f"parallel_{parallel}_s"] = round(reap_seconds(args.stacks, args.destroy_seconds, parallel), 2)
        os.environ.clear()
        os.environ.update(saved)
    baseline = figures[f"parallel_{args.parallel[0]}_s"]
    figures.update({f"speedup_parallel_{p}": round(baseline / figures[f"parallel_{p}_s"], 2) for p in args.parallel})
    print(json.dumps({"stacks": args.stacks, "destroy_seconds": args.destroy_seconds, **figures}, indent=2))


if __name__ == "__main__":
    main()
