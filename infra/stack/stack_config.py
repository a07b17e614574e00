"""Load a stack's settings: from Pulumi.<env>.yaml offline, or from Pulumi config during `pulumi up`.

Only the standard library at import: ./kit's tasks import this module to name files and errors, and
pydantic and the settings models load only when a stack is validated.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.suggest import did_you_mean, unknown_key

if TYPE_CHECKING:
    from infra.stack.naming import StackNames
    from infra.stack.settings import StackSettings

PROJECT = "mlops-edge-kit"
ORGANIZATION = "organization"  # what Pulumi reports for a self-managed (file or blob) backend
ROOT = Path(__file__).resolve().parents[2]
SECRET_PLACEHOLDER = "offline-plan-secret-placeholder"
# Config namespaces a stack file may hold: this project's and those of the providers the program configures.
NAMESPACES = (PROJECT, "azure-native", "azuredevops", "kubernetes", "pulumi")


class SettingsError(Exception):
    """Invalid settings: every problem, each naming the file and the key path."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Stack:
    """One environment: its validated settings and the Azure names derived from them."""

    env: str
    settings: StackSettings
    names: StackNames


def stack_file(env: str, root: Path = ROOT) -> Path:
    return root / f"Pulumi.{env}.yaml"


def available_envs(root: Path = ROOT) -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def read_stack_file(path: Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file, exactly as written."""
    import yaml

    from common import yamlio

    try:
        document = yamlio.load(path.read_text(), path.name) or {}
    except FileNotFoundError:
        raise SettingsError([f"{path.name}: no such stack file"]) from None
    except IsADirectoryError:
        raise SettingsError([f"{path.name}: is a directory, not a stack file"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError([f"{path.name}: cannot read it: {err}"]) from None
    except yaml.YAMLError as err:  # keeps PyYAML's "line N, column M" and the caret under the offending spot
        text = str(err).replace("\n", "\n    ")
        raise SettingsError([f"{path.name}: invalid YAML: {text}"]) from None
    config = document.get("config", {}) if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise SettingsError([f"{path.name}: config: must be a mapping of '{PROJECT}:<key>' to values"])
    return config


def namespace_problems(config: dict[str, Any], source: str) -> list[str]:
    """Keys of a stack file in no namespace the kit knows (a misspelt one is otherwise ignored without a word)."""
    problems = []
    for key in config:
        namespace, colon, _ = str(key).partition(":")
        if not colon:
            problems.append(f"{source}: config.{key}: not namespaced; write it as '{PROJECT}:{key}'")
        elif namespace not in NAMESPACES:
            problems.append(f"{source}: config.{key}: unknown namespace '{namespace}'"
                            f"{did_you_mean(namespace, NAMESPACES)} (known: {', '.join(NAMESPACES)})")
    return problems


def project_values(config: dict[str, Any]) -> dict[str, Any]:
    """This project's plain (non-secret) values, keyed without the namespace."""
    prefix = f"{PROJECT}:"
    return {k[len(prefix):]: v for k, v in config.items()
            if k.startswith(prefix) and not (isinstance(v, dict) and "secure" in v)}


def engine_config(config: dict[str, Any], settings: StackSettings) -> tuple[dict[str, str], list[str], list[str]]:
    """Config as the Pulumi engine hands it to a program, secure values as placeholders.

    Returns (values, secret keys, required secrets the file does not set yet; placeholders stand in for them).
    """
    required = dict.fromkeys([*settings.agents.secret_config_keys(), *settings.devops.secret_config_keys(settings.agents),
                              *settings.ml.secret_config_keys(),
                              *(settings.fleet_receiver.secret_config_keys() if settings.fleet_receiver else [])])
    missing = [k for k in required if f"{PROJECT}:{k}" not in config]
    config = {**config, **{f"{PROJECT}:{k}": {"secure": ""} for k in missing}}
    values, secret_keys = {}, []
    for key, value in config.items():
        if isinstance(value, dict) and "secure" in value:
            values[key] = SECRET_PLACEHOLDER
            secret_keys.append(key)
        else:
            values[key] = value if isinstance(value, str) else json.dumps(value)
    return values, secret_keys, missing


def load_stack(values: dict[str, Any], *, source: str, env: str, organization: str) -> Stack:
    """Validate `values` (this project's config keys) for `env`; raise SettingsError listing every problem."""
    from pydantic import ValidationError

    from infra.stack.naming import stack_names, stack_suffix
    from infra.stack.settings import StackSettings
    from infra.stack.settings_rules import decidable_network_rules, violations

    where = f"{source}: config.{PROJECT}:"
    try:
        settings = StackSettings.model_validate(values)
    except ValidationError as err:
        fields = [f"{where}{_dotted(e['loc'])}: {_message(e, StackSettings)}" for e in err.errors()]
        rules = [f"{where}{key}: {problem}" for key, problem in decidable_network_rules(values)]
        raise SettingsError(fields + rules) from None
    overrides = settings.names.model_dump(exclude_none=True)
    names = stack_names(settings.name_prefix, env, stack_suffix(organization, PROJECT, env), overrides)
    problems = violations(settings, names)
    if problems:
        raise SettingsError([f"{where}{key}: {problem}" for key, problem in problems])
    return Stack(env=env, settings=settings, names=names)


def _message(error: dict, model) -> str:
    """Pydantic's message without its 'Value error, ' prefix, with the offending scalar value; an unknown key
    with the closest known one."""
    if error["type"] == "extra_forbidden":
        return f"unknown key{unknown_key(model, tuple(error['loc']))}"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, (str, int, float)) and error["type"] != "value_error":
        message += f" (got {value!r})"
    return message


def _dotted(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path
