"""Fleet delivery at scale (run as root: it starts Debian's docker-registry on loopback).

    .venv/bin/python benchmarks/fleet_rollout.py --sites 1000 --offline 50 --broken-wave 2

1. render_push_s: render every site of a generated fleet (validated) and push its Flux artifact to a real
   registry (CNCF distribution with token auth), same-run baseline: pushing the same number of pre-built
   artifacts of the same size (the registry's and the client's floor, no render).
2. A promotion of a release that breaks every site of wave --broken-wave (0 = the canaries), simulated in
   virtual time (sites with Flux's poll interval and jitter, --offline of them disconnected during it),
   over an in-memory registry that counts requests.

The last line is a JSON object: render_push_s, render_push_baseline_s, rollout_s (simulated seconds from
the first tag move to the halt), halt_after_polls (the sites' Flux poll intervals, 5m, from the first
failure report to the halt, rounded up; halt_after_promotion_polls counts the promotion's own 1m polls),
sites_on_bad_release (sites that ran the release and failed on it), bad_release_limit (canaries + that
wave's budget), offline_converged (share of the offline sites on their live tag after they reconnect) and
registry_requests_per_min (peak minute, simulated).

--scenario silent|unfetchable|ratio|one-window runs only the simulated promotion of that case (issue 18) and
adds result, reason, broken_sites_ran_release, broken_bound (canaries + budget + 1 of the halted wave),
reverted, sites_on_bad_release_after (2 h after the end, or after the offline sites are back) and
simulated_hours.
"""
import argparse
import json
import math
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet import flux  # noqa: E402
from fleet.artifact import Pusher, site_artifact  # noqa: E402
from fleet.config import Window, load_fleet  # noqa: E402
from fleet.promote import Promotion  # noqa: E402
from fleet.release import build, push_release  # noqa: E402
from tests.fleet import fleetgen  # noqa: E402
from tests.fleet.registry import RealRegistry  # noqa: E402
from tests.fleet.simfleet import POLL_S, MemoryStatuses, MemoryTags, SimFleet, SimSite  # noqa: E402

START = datetime(2026, 12, 7, 0, 0, tzinfo=timezone.utc)
REVISION = "main@sha1:" + "1" * 40
PLAN = {"canaries": ["site-0000", "site-0001", "site-0002", "site-0003", "site-0004"],
        "waves": [{"name": "early", "share": 0.05, "failureBudget": "2%"},
                  {"name": "eu", "labels": {"region": "eu"}, "failureBudget": "1%"},
                  {"name": "rest", "failureBudget": "1%"}],
        "soak": "30m", "offlineDeadline": "6h", "pollInterval": "1m", "offlineAfter": "30m"}


def seeds(work: Path, count: int, registry_host: str) -> Path:
    """The repository's seeds with `count` generated sites in env bench."""
    root = work / "fleet"
    for path in (ROOT / "fleet").glob("*/*.yaml"):
        if path.parent.name in ("bases", "rings"):
            (root / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / path.parent.name / path.name)
    fleet = yaml.safe_load((ROOT / "fleet" / "fleet.yaml").read_text())
    fleet["environments"] = {"bench": {"registry": registry_host, "insecure": True, "notifyType": "generic",
                                       "source": "https://example.test/seeds"}}
    (root / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    for i in range(count):
        folder = root / "sites" / f"site-{i:04d}"
        folder.mkdir(parents=True)
        folder.joinpath("site.yaml").write_text(yaml.safe_dump(
            {"env": "bench", "ring": "standard", "labels": {"region": "eu" if i % 2 else "us"},
             "metallb": {"addresses": [f"10.{i // 250}.{i % 250}.200-10.{i // 250}.{i % 250}.210"]}}))
    model = work / "models" / "defect-detector" / "7"
    model.mkdir(parents=True)
    (model / "model.onnx").write_bytes(b"w" * 4096)
    return root


def render_push(work: Path, count: int) -> tuple[float, float]:
    registry = RealRegistry(work / "registry").start()
    try:
        user = registry.user("bench", [("*", ("pull", "push"))])
        root = seeds(work, count, registry.host)
        began = time.perf_counter()
        fleet = load_fleet(root)
        models, _, sites = build(fleet, "bench", work / "models", REVISION)
        push_release(fleet, "bench", "r1", models, sites, REVISION, Pusher(registry.url, user))
        render_push_s = time.perf_counter() - began
        size = len(next(iter(sites.values())).layers[0].data)
        blank = [site_artifact({"site.yaml": random.randbytes(size)}, "https://x", REVISION) for _ in range(count)]
        began = time.perf_counter()
        pusher = Pusher(registry.url, user)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: pusher.push(f"baseline/s{i}", blank[i], ("r1",)), range(count)))
        return render_push_s, time.perf_counter() - began
    finally:
        registry.close()


SCENARIOS = {  # name: (plan changes, which sites the release breaks, per-site simulation, one weekly window)
    "broken-wave": ({}, None, lambda name, r2: {}, None),
    "silent": ({}, "all", lambda name, r2: {"silent": True}, None),
    "unfetchable": ({}, "all", lambda name, r2: {"unfetchable": {r2}}, None),
    "ratio": ({"canaries": [], "waves": [{"name": "all", "failureBudget": 2}]}, "ratio", lambda name, r2: {}, None),
    "one-window": ({}, "all", lambda name, r2: {}, Window(cron="0 0 * * MON", timeZone="UTC", duration="1h")),
}


def rollout(work: Path, count: int, offline: int, broken_wave: int, scenario: str = "broken-wave") -> dict:
    changes, breaks, behaviour, window = SCENARIOS[scenario]
    windows = {f"site-{i:04d}": [window] for i in range(count)} if window else None
    sites = fleetgen.sites(count, windows, env="bench", labels=lambda i: {"region": "eu" if i % 2 else "us"})
    plan = fleetgen.plan(work, sites, **(PLAN | changes))
    broken = {"all": {s.name for s in sites}, "ratio": {s.name for s in sites if int(s.name[-4:]) % 3},
              None: set(plan.waves[broken_wave].sites) if breaks is None else set()}[breaks]
    canaries = plan.waves[0].sites if plan.waves[0].name == "canary" else ()
    rng = random.Random(11)
    away = rng.sample([s.name for s in sites if s.name not in canaries], offline)
    back = START.timestamp() + 12 * 3600
    tags = MemoryTags(None)  # its clock is the simulated fleet's, set below
    digests = {}
    for site in sites:
        repo = flux.repository_path("bench", site.name)
        for release in ("r1", "r2"):
            art = site_artifact({"site.yaml": f"{site.name} {release}".encode()}, "https://x", REVISION)
            tags.manifests[(repo, release)] = (art.digest, art.manifest)
            digests[(site.name, release)] = art.digest
        tags.manifests[(repo, flux.LIVE_TAG)] = tags.manifests[(repo, "r1")]
    sims = [SimSite(s, broken={digests[(s.name, "r2")]} if s.name in broken else set(),
                    offline=[(0, back)] if s.name in away else [], applied=digests[(s.name, "r1")],
                    **behaviour(s.name, digests[(s.name, "r2")])) for s in sites]
    # every site reported r1 before; one-window: the promotion starts as the shared window opens
    start = START - timedelta(days=7) if window else START
    fleet = tags.clock = SimFleet("bench", sims, tags, MemoryStatuses(), start)
    fleet.advance(START.timestamp() + (0 if window else 1800))
    tags.per_minute.clear()
    began, wall = fleet.now(), time.perf_counter()
    outcome = Promotion(plan, "r2", tags, fleet.statuses, fleet, "bench-run", log=lambda m: None,
                        sites={s.name: s for s in sites}).run()
    rollout_s, wall_s = fleet.now() - began, time.perf_counter() - wall
    ran = {sim.site.name for sim in sims if sim.site.name in broken and digests[(sim.site.name, "r2")] in sim.history}
    halted = next((w for w in plan.waves if w.name == outcome.halted_wave), None)
    live = {s.name: tags.manifests[(flux.repository_path("bench", s.name), flux.LIVE_TAG)][0] for s in sites}
    fleet.advance(max(fleet.now(), back) + 2 * 3600)
    converged = sum(1 for sim in sims if sim.site.name in away and sim.applied == live[sim.site.name])
    return {"scenario": scenario, "result": outcome.result, "reason": outcome.reason,
            "halted_wave": outcome.halted_wave, "rollout_s": round(rollout_s),
            "simulated_hours": round(rollout_s / 3600, 2), "rollout_wall_s": round(wall_s, 2),
            "halt_after_polls": math.ceil(outcome.polls_to_halt * plan.poll_s / POLL_S),
            "halt_after_promotion_polls": outcome.polls_to_halt,
            "broken_sites_ran_release": len(ran), "sites_on_bad_release": len(ran),
            "broken_bound": len(canaries) + (halted.budget + 1 if halted else 0),
            "bad_release_limit": len(PLAN["canaries"]) + plan.waves[min(broken_wave, len(plan.waves) - 1)].budget,
            "reverted": outcome.result == "halted" and all(live[s] == digests[(s, "r1")] for s in halted.sites),
            "sites_on_bad_release_after": sum(1 for sim in sims if sim.site.name in broken
                                              and sim.applied == digests[(sim.site.name, "r2")]),
            "offline_converged": round(converged / offline, 3) if offline else 1.0,
            "registry_requests_per_min": max(tags.per_minute.values(), default=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--offline", type=int, default=50)
    parser.add_argument("--broken-wave", type=int, default=2)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="broken-wave",
                        help="silent: no site reports; unfetchable: no site can pull the release; ratio: one wave, "
                             "budget 2, the release breaks 2 of 3 sites; one-window: one weekly window, all broken")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    try:
        render_push_s = baseline_s = 0.0
        if args.scenario == "broken-wave":
            render_push_s, baseline_s = render_push(work, args.sites)
            print(f"render+push {args.sites} sites: {render_push_s:.1f} s (baseline push only: {baseline_s:.1f} s)")
        figures = rollout(work, args.sites, args.offline, args.broken_wave, args.scenario)
        print(f"rollout: {figures['result']} at wave {figures['halted_wave']}, {figures['rollout_s']} s simulated")
        print(json.dumps({"sites": args.sites, "render_push_s": round(render_push_s, 1),
                          "render_push_baseline_s": round(baseline_s, 1), **figures}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
