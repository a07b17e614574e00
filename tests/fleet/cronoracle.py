"""An oracle for window openings that does not share the kit's cron parser: the Flux Operator's own scheduler.

tests/fleet/windowjudge/ is a Go program that runs the operator's internal/schedule (NewScheduler, ShouldReconcile,
Next: the code a ResourceSetInputProvider runs) at the version its go.mod pins; its module path sits under the
operator's because Go lets only code below a module's path import its internal packages. It is built once per
machine from the Go module proxy into ${XDG_CACHE_HOME:-~/.cache}/mlops-edge-kit/windowjudge-<hash>/ and answers one
JSON request per line, so one process serves a whole simulation (tests/fleet/simfleet.py)."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

SOURCE = Path(__file__).with_name("windowjudge")
TIMEOUT = "2m"  # the reconcile timeout the kit's providers carry (fleet/flux.py OPERATOR_TIMEOUT)


def binary() -> Path:
    """The judge, built when its source (main.go, go.mod, go.sum) changed since the last build on this machine."""
    digest = hashlib.sha256(b"".join((SOURCE / n).read_bytes() for n in ("main.go", "go.mod", "go.sum"))).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops-edge-kit"
    target = cache / f"windowjudge-{digest[:16]}" / "windowjudge"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            subprocess.run(["nice", "go", "build", "-mod=readonly", "-trimpath", "-o", f"{target}.new", "."],
                           cwd=SOURCE, check=True, capture_output=True)
            Path(f"{target}.new").rename(target)
    return target


class Judge:
    """One judge process answering requests in turn."""

    def __init__(self):
        self.process = subprocess.Popen([str(binary())], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        bufsize=1)

    def ask(self, cron: str, zone: str, window: str, at: datetime) -> dict:
        """{error} or {open: the operator reconciles at `at`, next: its next trigger after `at`}."""
        request = {"cron": cron, "timeZone": zone, "window": window, "timeout": TIMEOUT,
                   "at": at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        self.process.stdin.write(json.dumps(request) + "\n")
        answer = json.loads(self.process.stdout.readline())
        if answer.get("next"):
            answer["next"] = datetime.fromisoformat(answer["next"])
        return answer


@lru_cache(maxsize=1)
def judge() -> Judge:
    return Judge()


def opening(cron: str, zone: str, duration: str, after: datetime) -> datetime:
    """When the operator next reconciles a provider with this window at or after `after` (`after` itself when it
    would then): whole seconds, as the operator's clock reads them in a request."""
    answer = judge().ask(cron, zone, duration, after)
    assert "error" not in answer, f"the operator refuses {cron!r} in {zone}: {answer['error']}"
    return after if answer["open"] else answer["next"]
