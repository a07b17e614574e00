"""Day-2 operations on an agent pool: status and the clean-up of offline agents.

Clean-up deletes only agents that are offline, not running a job, not a placeholder
(`placeholder-*`, see agents.placeholder) and offline for longer than the threshold
(since `statusChangedOn`, or `createdOn` when the service omits it).
"""
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from agents.azdo import Agent, AzdoClient
from agents.placeholder import PLACEHOLDER_PREFIX
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '2h', '7d' -> timedelta; ValueError naming the expected form otherwise."""
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30m, 2h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class Decision:
    agent: Agent
    delete: bool
    reason: str


def decide(agent: Agent, older_than: timedelta, now: datetime) -> Decision:
    """Whether clean-up may delete this agent, and why (or why not)."""
    if agent.name.startswith(PLACEHOLDER_PREFIX):
        return Decision(agent, False, "placeholder (keeps the pool scalable to zero)")
    if agent.online:
        return Decision(agent, False, "online")
    if agent.busy:
        return Decision(agent, False, "busy (a job is assigned)")
    since = agent.status_changed_on or agent.created_on
    if since is None:
        return Decision(agent, False, "no timestamp from the service")
    age = now - since
    if age < older_than:
        return Decision(agent, False, f"offline for {format_age(age)} only")
    return Decision(agent, True, f"offline for {format_age(age)}")


def format_age(age: timedelta) -> str:
    minutes = int(age.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d"


def plan_cleanup(client: AzdoClient, pool_name: str, older_than: timedelta,
                 now: datetime | None = None) -> tuple[int, list[Decision]]:
    """The pool id and a decision for every agent of the pool."""
    now = now or datetime.now(timezone.utc)
    pool_id = client.pool_id(pool_name)
    return pool_id, [decide(agent, older_than, now) for agent in client.agents(pool_id)]


def apply_cleanup(client: AzdoClient, pool_id: int, decisions: list[Decision]) -> list[str]:
    """Deletes the agents marked for deletion; returns the names deleted."""
    deleted = []
    for decision in decisions:
        if decision.delete:
            client.delete_agent(pool_id, decision.agent.id)
            deleted.append(decision.agent.name)
    return deleted
