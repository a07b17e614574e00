"""The k3s flag names (config.yaml keys) per command, read from k3s's own Go source at lab build time: the
`ServerFlags` list of pkg/cli/cmds/server.go and the `Flags` of NewAgentCommand in agent.go (urfave/cli v2
flags: `Name` plus `Aliases`), each element an inline `&cli.<Type>Flag{...}` or a flag variable declared in
one of the package's files. Not the kit's own list (edge_hosts/inventory/k3s_keys.yaml): the stand-in judges
keys by what k3s defines."""
from __future__ import annotations

import re

NAME = re.compile(r'\bName:\s*"([^"]+)"')
ALIASES = re.compile(r'\bAliases:\s*\[\]string\{([^}]*)\}')
FLAG_VAR = re.compile(r'(\w+)\s*=\s*&?cli\.\w+Flag\{')
SERVER_LIST = re.compile(r"var ServerFlags = \[\]cli\.Flag\{")
AGENT_LIST = re.compile(r"func NewAgentCommand[\s\S]*?Flags:\s*\[\]cli\.Flag\{")


class FlagSourceError(ValueError):
    """The Go source does not have the shape this reader knows: the message says which part."""


def _end(text: str, start: int) -> int:
    """The index after the brace matching text[start] ('{'), skipping Go string literals."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char in '"`':
            i = _string_end(text, i)
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        i += 1
        if depth == 0:
            return i
    raise FlagSourceError("an unclosed brace")


def _string_end(text: str, start: int) -> int:
    quote, i = text[start], start + 1
    while text[i] != quote:
        i += 2 if quote == '"' and text[i] == "\\" else 1
    return i + 1


def _elements(body: str) -> list[str]:
    """The top-level comma-separated elements of a composite literal's body (comments dropped)."""
    body = re.sub(r"//[^\n]*", "", body)
    out, depth, start, i = [], 0, 0, 0
    while i < len(body):
        char = body[i]
        if char in '"`':
            i = _string_end(body, i)
            continue
        depth += {"{": 1, "(": 1, "[": 1, "}": -1, ")": -1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            out.append(body[start:i].strip())
            start = i + 1
        i += 1
    return [e for e in [*out, body[start:].strip()] if e]


def _names(flag: str) -> list[str]:
    name = NAME.search(flag)
    if not name:
        raise FlagSourceError(f"a flag without a Name: {flag[:60]}")
    aliases = ALIASES.search(flag)
    return [name.group(1), *re.findall(r'"([^"]+)"', aliases.group(1) if aliases else "")]


def _flag_vars(sources: dict[str, str]) -> dict[str, list[str]]:
    found = {}
    for text in sources.values():
        for match in FLAG_VAR.finditer(text):
            found[match.group(1)] = _names(text[match.end() - 1:_end(text, match.end() - 1)])
    return found


def _list(sources: dict[str, str], file: str, pattern: re.Pattern, variables: dict[str, list[str]]) -> list[str]:
    text = sources.get(file, "")
    match = pattern.search(text)
    if not match:
        raise FlagSourceError(f"{file}: no {pattern.pattern!r}")
    names = []
    for element in _elements(text[match.end():_end(text, match.end() - 1) - 1]):
        if "cli." in element and "Flag{" in element:
            names += _names(element)
        elif element.lstrip("&") in variables:
            names += variables[element.lstrip("&")]
        else:
            raise FlagSourceError(f"{file}: flag {element!r} is declared nowhere in the package")
    return names


def extract(sources: dict[str, str]) -> dict[str, list[str]]:
    """{"server": [...], "agent": [...]}: sorted flag names and aliases, from pkg/cli/cmds/*.go (file -> text)."""
    variables = _flag_vars(sources)
    return {"server": sorted(set(_list(sources, "server.go", SERVER_LIST, variables))),
            "agent": sorted(set(_list(sources, "agent.go", AGENT_LIST, variables)))}
