"""Agent lifecycle timings against the stand-ins (run as root: the agent runs as UID 10001).

  start -> listening    entrypoint spawn until the listener prints "Listening for Jobs"
                        (package in the image); target < 3 s
  SIGTERM -> exited     SIGTERM on an idle agent until deregistered and the entrypoint exited;
                        target < 5 s

Baselines, measured in the same run: the stand-in agent's own config.sh + run.sh until
listening, and its own `config.sh remove`, without the entrypoint around them. `--bin-mb`
pads the package's bin/ to a realistic size (the entrypoint copies bin/ at start).

    .venv/bin/python benchmarks/agent_lifecycle.py [--runs 5] [--bin-mb 0 100]
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.agents_runtime.azdo_standin import AzdoStandin, StandinState  # noqa: E402
from tests.agents_runtime.conftest import GOOD_TOKEN  # noqa: E402
from tests.agents_runtime.entrypoint_harness import AgentContainer  # noqa: E402

TARGETS = {"start -> listening": 3.0, "SIGTERM -> exited": 5.0}


def pad_bin(box: AgentContainer, megabytes: int) -> None:
    if megabytes:
        chunk = b"\x5a" * (1 << 20)
        with open(box.agent_dir / "bin" / "ballast.dll", "wb") as out:
            for _ in range(megabytes):
                out.write(chunk)


def entrypoint_run(standin: AzdoStandin, name: str, bin_mb: int) -> tuple[float, float]:
    box = AgentContainer(standin.org_url, GOOD_TOKEN, name=name)
    try:
        pad_bin(box, bin_mb)
        box.start()
        listening = box.wait_for_log("Listening for Jobs", timeout=60)
        sent = time.monotonic()
        box.signal(signal.SIGTERM)
        if box.wait_exit(60) != 0 or standin.state.agent_named(name) is not None:
            raise SystemExit(f"{name}: did not deregister cleanly:\n{box.log}")
        return listening, time.monotonic() - sent
    finally:
        box.stop()


def baseline_run(standin: AzdoStandin, name: str) -> tuple[float, float]:
    """The stand-in agent alone, configured and run in place (as root, allowed by env)."""
    box = AgentContainer(standin.org_url, GOOD_TOKEN, name=name)
    env = {**box.env, "AGENT_ALLOW_RUNASROOT": "1", "VSTS_AGENT_INPUT_TOKEN": GOOD_TOKEN}
    agent = box.agent_dir
    try:
        start = time.monotonic()
        subprocess.run([str(agent / "config.sh"), "--unattended", "--url", standin.org_url, "--auth", "pat",
                        "--pool", "edge-arm64", "--agent", name, "--replace", "--acceptTeeEula",
                        "--work", str(box.work)], env=env, check=True, capture_output=True)
        listener = subprocess.Popen([str(agent / "run.sh"), "--once"], env=env, stdout=subprocess.PIPE,
                                    text=True, start_new_session=True)
        listener.stdout.readline()
        listening = time.monotonic() - start
        start = time.monotonic()
        os.killpg(listener.pid, signal.SIGINT)
        listener.wait(30)
        subprocess.run([str(agent / "config.sh"), "remove", "--unattended", "--auth", "pat"],
                       env=env, check=True, capture_output=True)
        return listening, time.monotonic() - start
    finally:
        box.stop()


def summary(label: str, values: list[float]) -> str:
    target = TARGETS.get(label.split(" [")[0])
    verdict = "" if target is None else (" (target < %.0f s: %s)" % (target, "met" if max(values) < target else "MISSED"))
    return f"  {label:38s} median {statistics.median(values):6.3f} s   max {max(values):6.3f} s{verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bin-mb", type=int, nargs="+", default=[0, 100])
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("agent_lifecycle: run as root (the agent runs as UID 10001 through setpriv)")
    standin = AzdoStandin(StandinState()).start()
    try:
        base = [baseline_run(standin, f"baseline-{i}") for i in range(options.runs)]
        print(f"agent lifecycle, {options.runs} runs each (stand-in REST API and agent package)")
        print(summary("baseline: agent alone to listening", [b[0] for b in base]))
        print(summary("baseline: agent stop + remove", [b[1] for b in base]))
        for megabytes in options.bin_mb:
            runs = [entrypoint_run(standin, f"bench-{megabytes}-{i}", megabytes) for i in range(options.runs)]
            print(summary(f"start -> listening [bin +{megabytes} MB]", [r[0] for r in runs]))
            print(summary(f"SIGTERM -> exited [bin +{megabytes} MB]", [r[1] for r in runs]))
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
