"""Generated fleets for rollout tests and the benchmark: Site objects and their artifacts for two releases."""
from __future__ import annotations

from pathlib import Path

import yaml

from fleet.config import EnvView, Metallb, Model, Site, Window
from fleet.plan import load_rollout



def env_view(name: str = "production") -> EnvView:
    return EnvView(name, "registry.test", True, "generic", "", "https://example.test/seeds")


def sites(count: int, windows: dict[str, list[Window]] | None = None, labels=None, env: str = "production"
          ) -> list[Site]:
    """site-0000 ... with region eu for even, us for odd numbers (or labels(i))."""
    windows, view = windows or {}, env_view(env)
    made = []
    for i in range(count):
        name = f"site-{i:04d}"
        tags = labels(i) if labels else {"region": "eu" if i % 2 == 0 else "us"}
        made.append(Site(name, view, "standard", tags, Model(name="m", version="1"),
                         Metallb(addresses=["10.0.0.1-10.0.0.2"]), tuple(windows.get(name, ())), (), ()))
    return made


def plan(tmp: Path, all_sites: list[Site], **env):
    spec = {"canaries": ["site-0000"], "waves": [{"name": "early", "share": 0.2, "failureBudget": 0},
                                                 {"name": "eu", "labels": {"region": "eu"}, "failureBudget": 1},
                                                 {"name": "rest", "failureBudget": 1}],
            "soak": "20m", "offlineDeadline": "3h", "pollInterval": "1m", "offlineAfter": "30m"}
    spec.update(env)
    path = tmp / "rollout.yaml"
    env_name = all_sites[0].env.name
    path.write_text(yaml.safe_dump({"environments": {env_name: spec}}))
    return load_rollout(env_name, all_sites, path)
