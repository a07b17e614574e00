"""The Pulumi.<stack>.yaml files the lifecycle tasks read and write."""
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from common.files import atomic_write
from infra.stack.settings import Lifecycle
from infra.stack.stack_config import (ORGANIZATION, PROJECT, SettingsError, Stack, load_stack, project_values,
                                read_stack_file, stack_file)
LIFECYCLE_KEY = f"{PROJECT}:lifecycle"


def validated_stack(root: Path, env: str) -> Stack:
    """The env's settings, validated like the program will; raises SettingsError listing every problem."""
    path = stack_file(env, root)
    return load_stack(project_values(read_stack_file(path)), source=path.name, env=env, organization=ORGANIZATION)


def stack_lifecycle(root: Path, stack: str) -> Lifecycle | None:
    """The lifecycle settings of a stack, or None when it has no stack file here."""
    path = stack_file(stack, root)
    if not path.exists():
        return None
    raw = project_values(read_stack_file(path)).get("lifecycle", {})
    try:
        return Lifecycle.model_validate(raw)
    except ValidationError as err:
        raise SettingsError([f"{path.name}: config.{LIFECYCLE_KEY}: {e['msg']}" for e in err.errors()]) from None


def write_atomically(path: Path, config: dict[str, Any]) -> None:
    """Write `{config: ...}` to `path` through a temporary file and a rename: never a half-written stack file."""
    atomic_write(path, yaml.safe_dump({"config": config}, sort_keys=False), 0o644)
