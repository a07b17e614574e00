"""Validate pipeline YAML against the real Azure Pipelines schema (../shared/upstream/azure-pipelines/).

Azure Pipelines reads every YAML scalar as a string and converts it where an input wants a boolean or a
number; the schema says so too (its `boolean` is a string pattern, task inputs say `type: boolean`). So
scalars are validated as their YAML text: a string, which counts as a boolean when it spells one and as a
number when it is one. `ignoreCase` (the schema's own keyword) makes `pattern` and `enum` case-insensitive,
as the service matches task names and input values. A template file is a fragment: its `parameters` plus
`jobs`, validated against the schema's `jobsTemplate`.
"""
import json
import re
from functools import cache
from pathlib import Path

from jsonschema import Draft7Validator, validators
from jsonschema.exceptions import ValidationError

SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "upstream" / "azure-pipelines" / "service-schema.json"
_pattern, _enum = Draft7Validator.VALIDATORS["pattern"], Draft7Validator.VALIDATORS["enum"]
BOOLEAN = re.compile(r"^(true|false|y|yes|n|no|on|off)$", re.I)


def as_text(node):
    """Every scalar as the string Azure Pipelines reads (true -> "true", 5 -> "5")."""
    if isinstance(node, dict):
        return {str(key): as_text(value) for key, value in node.items()}
    if isinstance(node, list):
        return [as_text(item) for item in node]
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node) if not isinstance(node, str) else node


def _number(text) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


_TYPES = Draft7Validator.TYPE_CHECKER.redefine_many({
    "boolean": lambda _, value: isinstance(value, str) and bool(BOOLEAN.match(value)),
    "integer": lambda _, value: isinstance(value, str) and value.lstrip("-").isdigit(),
    "number": lambda _, value: isinstance(value, str) and _number(value),
})


def _pattern_ignoring_case(validator, pattern, instance, schema):
    if schema.get("ignoreCase") and isinstance(instance, str):
        if not re.search(pattern, instance, re.I):
            yield ValidationError(f"{instance!r} does not match {pattern!r} (any case)")
        return
    yield from _pattern(validator, pattern, instance, schema)


def _enum_ignoring_case(validator, enums, instance, schema):
    if schema.get("ignoreCase") and isinstance(instance, str):
        if instance.lower() not in {str(e).lower() for e in enums}:
            yield ValidationError(f"{instance!r} is not one of {enums!r} (any case)")
        return
    yield from _enum(validator, enums, instance, schema)


PipelineValidator = validators.extend(Draft7Validator, {"pattern": _pattern_ignoring_case,
                                                        "enum": _enum_ignoring_case}, type_checker=_TYPES)


@cache
def _schema() -> dict:
    return json.loads(SCHEMA.read_text())


@cache
def _validator(definition: str | None) -> Draft7Validator:
    schema = dict(_schema())
    if definition:
        schema.pop("oneOf")
        schema["$ref"] = f"#/definitions/{definition}"
    return PipelineValidator(schema)


def _leaves(error):
    """The innermost errors of anyOf/oneOf branches: where a document actually goes wrong."""
    if not error.context:
        yield error
    for child in error.context:
        yield from _leaves(child)


def problems(document: dict, definition: str | None = None) -> list[str]:
    """Schema violations of a pipeline (or, with definition="jobsTemplate", a job template), deepest first."""
    found = []
    for error in _validator(definition).iter_errors(as_text(document)):
        deepest = max(_leaves(error), key=lambda e: len(e.absolute_path))
        found.append(f"{'.'.join(str(p) for p in deepest.absolute_path) or '<root>'}: {deepest.message[:200]}")
    return found
