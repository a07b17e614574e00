"""`./kit plan --diff OLD_PLAN_JSON`: what changed between two plan.json documents, resource by resource."""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The fields of a planned resource a reviewer cares about, beside its inputs.
FIELDS = ("parent", "provider", "dependencies", "custom", "protect", "ignoreChanges")


class PlanFileError(Exception):
    """The old plan cannot be read: the message names the file and what is wrong."""


@dataclass
class Change:
    """One resource (or the stack outputs) that differs: '+' added, '-' removed, '~' changed."""

    action: str
    title: str
    properties: list[tuple[str, Any, Any]] = field(default_factory=list)  # (path, old, new); `MISSING` if absent


MISSING = object()


def read_plan(path: Path, env: str) -> dict[str, Any]:
    """A plan.json ./kit plan wrote for stack `env`, or PlanFileError naming the file and the problem."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanFileError(f"--diff {path}: no such file") from None
    except IsADirectoryError:
        raise PlanFileError(f"--diff {path}: is a directory; give the plan.json inside it") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PlanFileError(f"--diff {path}: cannot read it: {err}") from None
    except json.JSONDecodeError as err:
        raise PlanFileError(f"--diff {path}: not JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    resources = document.get("resources") if isinstance(document, dict) else None
    if not isinstance(resources, list) or not all(isinstance(r, dict) and "urn" in r for r in resources):
        raise PlanFileError(f"--diff {path}: not a plan.json of ./kit plan (no 'resources' list with urns)")
    stack = _stack(document)
    if stack != env:
        raise PlanFileError(f"--diff {path}: a plan of stack '{stack}', not of '{env}': their resources' URNs all "
                            f"differ, so every resource would show as removed and added; give an earlier plan of "
                            f"{env} (./kit plan --env {env} writes out/{env}/plan.json)")
    return document


def _stack(document: dict[str, Any]) -> str:
    """The plan's stack: its `stack` field, else the stack in its URNs (urn:pulumi:<stack>::<project>::...)."""
    if isinstance(document.get("stack"), str):
        return document["stack"]
    urns = {str(r["urn"]).split("::")[0].removeprefix("urn:pulumi:") for r in document["resources"]}
    return ", ".join(sorted(urns)) or "(none)"


def plan_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every added, removed and changed resource in the new plan's order (removed ones last), then the outputs."""
    before = {r["urn"]: r for r in old["resources"]}
    after = {r["urn"]: r for r in new["resources"]}
    changes = []
    for urn, resource in after.items():
        if urn not in before:
            changes.append(Change("+", _title(resource)))
        else:
            properties = _differences(_comparable(before[urn]), _comparable(resource))
            if properties:
                changes.append(Change("~", _title(resource), properties))
    changes += [Change("-", _title(r)) for urn, r in before.items() if urn not in after]
    outputs = _differences(old.get("outputs") or {}, new.get("outputs") or {})
    if outputs:
        changes.append(Change("~", "stack outputs", outputs))
    return changes


def _title(resource: dict[str, Any]) -> str:
    return f"{resource.get('type', '?')} {resource.get('name', resource['urn'])}"


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    return {**{k: resource.get(k) for k in FIELDS if k in resource}, "inputs": resource.get("inputs") or {}}


def _differences(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted path, old, new) for every leaf that differs; mappings key by key, lists of the same length item by
    item ('[i]'), other lists as whole values."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(old.keys() | new.keys()):
            sub = f"{path}.{key}" if path else str(key)
            if key not in new:
                found.append((sub, old[key], MISSING))
            elif key not in old:
                found.append((sub, MISSING, new[key]))
            else:
                found += _differences(old[key], new[key], sub)
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in _differences(a, b, f"{path}[{i}]")]
    return [] if old == new else [(path, old, new)]


def shown(value: Any) -> str:
    """A value as the diff prints it: JSON, '(absent)' when the side does not have it."""
    return "(absent)" if value is MISSING else json.dumps(value, sort_keys=True)
