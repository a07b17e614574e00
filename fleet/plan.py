"""fleet/rollout.yaml: canaries, then waves (by labels or share of the env's sites), each with a failure
budget; a soak time and a deadline for sites that are offline or whose window has not opened. The plan
also says which sites cannot apply a wave before its deadline because their next window opens later."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import yaml
from pydantic import Field, ValidationError, field_validator

from common import yamlio
from fleet import cron
from common.suggest import did_you_mean
from fleet.config import DEFAULT_ROOT, Duration, FleetError, Site, Strict, Window, duration_s, problems_of


class WaveSpec(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")]
    labels: dict[str, str] = {}
    share: Annotated[float, Field(gt=0, le=1)] | None = None
    failure_budget: int | str = Field(0, alias="failureBudget")
    min_healthy: Annotated[int, Field(ge=1)] | None = Field(None, alias="minHealthy")  # default: the probe's size
    approval: bool = False  # the promotion stops before this wave until fleet.approve

    @field_validator("failure_budget")
    @classmethod
    def _budget(cls, value):
        if isinstance(value, int) and value >= 0:
            return value
        if isinstance(value, str) and value.endswith("%") and value[:-1].replace(".", "", 1).isdigit():
            return value
        raise ValueError("must be a count of sites (>= 0) or a share such as '5%'")


class EnvPlan(Strict):
    canaries: list[str] = []
    waves: Annotated[list[WaveSpec], Field(min_length=1)]
    soak: Duration = "30m"
    offline_deadline: Duration = Field("24h", alias="offlineDeadline")
    poll_interval: Duration = Field("1m", alias="pollInterval")
    offline_after: Duration = Field("30m", alias="offlineAfter")  # no report for this long: the site is offline


class RolloutFile(Strict):
    environments: dict[str, EnvPlan]


@dataclass(frozen=True)
class Wave:
    name: str
    sites: tuple[str, ...]
    budget: int
    min_healthy: int  # healthy reports on the release a wave needs to pass
    approval: bool = False


@dataclass(frozen=True)
class Plan:
    env: str
    waves: tuple[Wave, ...]
    soak_s: float
    deadline_s: float
    poll_s: float
    offline_after_s: float


def load_rollout(env: str, sites: list[Site], path: Path = DEFAULT_ROOT / "rollout.yaml") -> Plan:
    """The env's plan with every site placed in exactly one wave; FleetError lists all problems."""
    try:
        rollout = RolloutFile.model_validate(yamlio.load(path.read_text(), str(path)) or {})
    except (OSError, yaml.YAMLError) as err:
        raise FleetError(f"{path}: cannot read: {err}") from None
    except ValidationError as err:
        raise FleetError("\n".join(problems_of(err, RolloutFile, path))) from None
    if env not in rollout.environments:
        raise FleetError(f"{path}: environments: no plan for '{env}'{did_you_mean(env, rollout.environments)}")
    spec = rollout.environments[env]
    names = {s.name for s in sites}
    unknown = [c for c in spec.canaries if c not in names]
    if unknown:
        raise FleetError(f"{path}: environments.{env}.canaries: not sites of {env}: "
                         + ", ".join(f"{c}{did_you_mean(c, names)}" for c in unknown))
    waves = _waves(spec, sorted(sites, key=lambda s: s.name))
    sizes = {w.name: len(w.sites) for w in waves}
    over = [f"{path}: environments.{env}.waves[{i}].failureBudget: {_budget(w.failure_budget, sizes[w.name])} is "
            f"over the wave's {sizes[w.name]} sites" for i, w in enumerate(spec.waves)
            if w.name in sizes and _budget(w.failure_budget, sizes[w.name]) > sizes[w.name]]
    if over:
        raise FleetError("\n".join(over))
    return Plan(env, waves, duration_s(spec.soak),
                duration_s(spec.offline_deadline), duration_s(spec.poll_interval), duration_s(spec.offline_after))


def _budget(value: int | str, size: int) -> int:
    return value if isinstance(value, int) else math.floor(size * float(value[:-1]) / 100)


def _waves(spec: EnvPlan, sites: list[Site]) -> tuple[Wave, ...]:
    """Canaries first (budget 0), then each wave in order; the last wave takes every site left."""
    waves = [Wave("canary", tuple(spec.canaries), 0, 1)] if spec.canaries else []
    left = [s for s in sites if s.name not in spec.canaries]
    for i, wave in enumerate(spec.waves):
        matching = [s for s in left if all(s.labels.get(k) == v for k, v in wave.labels.items())]
        if wave.share is not None:
            matching = matching[:math.ceil(wave.share * len(sites))]
        if i == len(spec.waves) - 1:
            matching = left
        chosen = {s.name for s in matching}
        left = [s for s in left if s.name not in chosen]
        budget = _budget(wave.failure_budget, len(chosen))
        waves.append(Wave(wave.name, tuple(sorted(chosen)), budget,
                          wave.min_healthy or min(budget + 1, max(len(chosen), 1)), wave.approval))
    return tuple(w for w in waves if w.sites)


def next_opening(window: Window, after: datetime) -> datetime:
    """When the window next admits a reconcile at or after `after` (`after` itself when it is open then, with the
    operator's reconcile timeout still to run)."""
    zone, schedule = ZoneInfo(window.time_zone), cron.parse(window.cron)
    length = timedelta(seconds=duration_s(window.duration))
    local = (after.astimezone(zone) - length).replace(second=0, microsecond=0)
    for day in range(cron.HORIZON_DAYS + math.ceil(length / timedelta(days=1))):
        date = local.date() + timedelta(days=day)
        if not schedule.day_matches(date):
            continue
        for h in sorted(schedule.hours):
            for m in sorted(schedule.minutes):
                opens = datetime(date.year, date.month, date.day, h, m, tzinfo=zone)
                if opens > after or cron.admits(opens, length, after):
                    return max(opens, after)
    raise FleetError(f"window {window.cron} ({window.time_zone}) never opens within {cron.HORIZON_DAYS} days")


def site_opening(site: Site, after: datetime) -> datetime:
    """The earliest moment the site applies a new release: now when it has no windows."""
    return min((next_opening(w, after) for w in site.windows), default=after)


def late_sites(plan: Plan, sites: dict[str, Site], start: datetime) -> dict[str, list[str]]:
    """Per wave, the sites whose next window opens after the wave's deadline (if the wave started at start,
    each earlier wave taking its soak time)."""
    late, wave_start = {}, start
    for wave in plan.waves:
        deadline = wave_start + timedelta(seconds=plan.deadline_s)
        late[wave.name] = [s for s in wave.sites if site_opening(sites[s], wave_start) > deadline]
        wave_start += timedelta(seconds=plan.soak_s)
    return late
