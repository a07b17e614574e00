"""Compile the kit's pipeline YAML the way Azure Pipelines does, for the template syntax the kit uses.

Handles `template:` job references with declared parameters (required, defaults, types), `${{ parameters.x }}`,
`${{ each x in parameters.y }}`, `${{ if parameters.flag }}`, `join()`, `length()`, `eq()`, `ne()` and integer
literals. Anything else raises, so a template
that starts using more syntax fails the tests instead of being misread. Runtime `$(macros)` stay as they are.
"""
import re
from pathlib import Path
from typing import Any

import yaml

WHOLE = re.compile(r"^\$\{\{\s*(.+?)\s*\}\}$")
INLINE = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")
EACH = re.compile(r"^each\s+(\w+)\s+in\s+(.+)$")
IF = re.compile(r"^if\s+(.+)$")
JOIN = re.compile(r"^join\(\s*'([^']*)'\s*,\s*(.+)\)$")
CALL = re.compile(r"^(length|eq|ne)\((.*)\)$")
TYPES = {"string": str, "boolean": bool, "object": (list, dict), "number": (int, float)}


class TemplateError(Exception):
    pass


def _arguments(text: str) -> list[str]:
    """A call's arguments, split at the commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts, current = parts + [current.strip()], ""
        else:
            current += char
    return parts + [current.strip()]


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    join = JOIN.match(expression)
    if join:
        return join.group(1).join(str(v) for v in evaluate(join.group(2), context))
    if expression.isdigit():
        return int(expression)
    call = CALL.match(expression)
    if call:
        values = [evaluate(argument, context) for argument in _arguments(call.group(2))]
        if call.group(1) == "length":
            return len(values[0])
        return (values[0] == values[1]) == (call.group(1) == "eq")
    head, *path = expression.split(".")
    if head not in context:
        raise TemplateError(f"unsupported expression ${{{{ {expression} }}}}")
    value = context[head]
    for part in path:
        if not isinstance(value, dict) or part not in value:
            raise TemplateError(f"${{{{ {expression} }}}}: no {part!r}")
        value = value[part]
    return value


def expand(node: Any, context: dict[str, Any], here: Path) -> Any:
    if isinstance(node, str):
        whole = WHOLE.match(node)
        if whole:
            return evaluate(whole.group(1), context)
        return INLINE.sub(lambda m: str(evaluate(m.group(1), context)), node)
    if isinstance(node, list):
        return [item for entry in node for item in _expand_entry(entry, context, here)]
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            directive = WHOLE.match(key)
            if directive:
                result.update(_directive_mapping(directive.group(1), value, context, here))
            else:
                result[expand(key, context, here)] = expand(value, context, here)
        return result
    return node


def _directive_mapping(directive: str, value: Any, context: dict[str, Any], here: Path) -> dict:
    condition = IF.match(directive)
    if not condition:
        raise TemplateError(f"unsupported mapping directive ${{{{ {directive} }}}}")
    return expand(value, context, here) if evaluate(condition.group(1), context) else {}


def _expand_entry(entry: Any, context: dict[str, Any], here: Path) -> list:
    """One sequence entry: spliced by `each`/`if`, included from a `template:`, or expanded as is."""
    if isinstance(entry, dict) and len(entry) == 1:
        key, value = next(iter(entry.items()))
        directive = WHOLE.match(str(key))
        if directive:
            each = EACH.match(directive.group(1))
            if each:
                return [item for v in evaluate(each.group(2), context)
                        for item in expand(value, {**context, each.group(1): v}, here)]
            condition = IF.match(directive.group(1))
            if condition:
                return expand(value, context, here) if evaluate(condition.group(1), context) else []
            raise TemplateError(f"unsupported sequence directive ${{{{ {directive.group(1)} }}}}")
    if isinstance(entry, dict) and "template" in entry:
        arguments = expand(entry.get("parameters", {}), context, here)
        return include(here / entry["template"], arguments)
    return [expand(entry, context, here)]


def bind(declared: list[dict], given: dict[str, Any], where: str) -> dict[str, Any]:
    """Template parameters as Azure Pipelines binds them: unknown, missing and mistyped ones are errors."""
    names = {p["name"] for p in declared}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TemplateError(f"{where}: unknown parameter(s) {unknown}")
    bound = {}
    for parameter in declared:
        name = parameter["name"]
        if name not in given and "default" not in parameter:
            raise TemplateError(f"{where}: parameter {name} is required")
        value = given.get(name, parameter.get("default"))
        if not isinstance(value, TYPES[parameter.get("type", "string")]):
            raise TemplateError(f"{where}: parameter {name} is not a {parameter.get('type', 'string')}")
        bound[name] = value
    return bound


def include(path: Path, arguments: dict[str, Any]) -> list:
    """The jobs of a job template, compiled with these arguments."""
    document = yaml.safe_load(path.read_text())
    parameters = bind(document.get("parameters", []), arguments, path.name)
    return expand(document["jobs"], {"parameters": parameters}, path.parent)


def compile_pipeline(path: Path, arguments: dict[str, Any]) -> dict:
    """The pipeline with every template included and every compile-time expression resolved."""
    document = yaml.safe_load(path.read_text())
    parameters = bind(document.get("parameters", []), arguments, path.name)
    return expand(document, {"parameters": parameters}, path.parent)


def jobs(pipeline: dict) -> list[tuple[str, dict]]:
    """(stage name, job) for every job of every stage."""
    return [(stage["stage"], job) for stage in pipeline["stages"] for job in stage["jobs"]]


def steps(job: dict) -> list[dict]:
    if "strategy" in job:
        return job["strategy"]["runOnce"]["deploy"]["steps"]
    return job["steps"]
