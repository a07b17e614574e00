"""Strict validation of rendered objects against the upstream CRDs in ../shared/upstream (tests only).

A CRD schema is OpenAPI v3 with Kubernetes extensions: an object schema with properties and without
x-kubernetes-preserve-unknown-fields is closed (strict field validation rejects unknown fields there)."""
from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import jsonschema
import yaml

UPSTREAM = Path(__file__).resolve().parents[2].parent / "shared" / "upstream"


def _closed(schema):
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("type") == "object" and "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@cache
def _schemas() -> dict[tuple[str, str], dict]:
    found = {}
    for path in UPSTREAM.glob("*/*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not (isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"):
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                schema["properties"]["metadata"] = {"type": "object"}
                found[(f"{group}/{version['name']}", kind, path.parent.name)] = _closed(schema)
    return found


def validate(obj: dict, folder: str | None = None) -> None:
    """Raise jsonschema.ValidationError unless obj is valid under its CRD (folder picks a version's CRDs)."""
    matches = [s for (api, kind, where), s in _schemas().items()
               if api == obj["apiVersion"] and kind == obj["kind"] and (folder is None or where == folder)]
    assert matches, f"no CRD for {obj['apiVersion']} {obj['kind']} in {UPSTREAM}"
    jsonschema.validate(obj, matches[0], cls=jsonschema.Draft7Validator)
