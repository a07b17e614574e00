"""The Pulumi.<stack>.yaml files the lifecycle tasks read and write."""
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from infra.settings import Lifecycle
from infra.stack_config import PROJECT, SettingsError, Stack, load_stack, project_values, read_stack_file, stack_file

ORGANIZATION = "organization"  # what Pulumi reports for a self-managed (file/blob) backend
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
    text = yaml.safe_dump({"config": config}, sort_keys=False)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
