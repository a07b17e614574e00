"""Strict validation of custom resources against the upstream CRDs in ../shared/upstream/.

A CRD's openAPIV3Schema becomes a JSON schema the way the API server applies it under strict field
validation: an object schema without `x-kubernetes-preserve-unknown-fields` is closed (unknown fields
fail), `x-kubernetes-int-or-string` accepts an integer or a string. `metadata` is checked by the API
server's own ObjectMeta, so only its shape (a mapping with a name) is checked here.
"""
from functools import cache
from pathlib import Path

import yaml
from jsonschema import Draft7Validator

UPSTREAM = Path(__file__).resolve().parents[3] / "shared" / "upstream"


def _closed(node):
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _closed(value) for key, value in node.items()
              if not key.startswith("x-kubernetes-") or key == "x-kubernetes-preserve-unknown-fields"}
    if node.get("x-kubernetes-int-or-string"):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("type") == "object" and "additionalProperties" not in schema \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False
    return schema


@cache
def validator(folder: str, kind: str, version: str = "v1alpha1") -> Draft7Validator:
    """The validator of `kind` from the CRDs in ../shared/upstream/<folder>/."""
    for path in sorted((UPSTREAM / folder).glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd.get("kind") != "CustomResourceDefinition" or crd["spec"]["names"]["kind"] != kind:
            continue
        (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        schema = _closed(served["schema"]["openAPIV3Schema"])
        schema["properties"]["metadata"] = {"type": "object", "required": ["name"]}
        schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/{version}"}
        schema["properties"]["kind"] = {"const": kind}
        return Draft7Validator(schema)
    raise LookupError(f"no CRD for {kind} in {UPSTREAM / folder}")


def problems(folder: str, obj: dict) -> list[str]:
    """Every schema violation of `obj`, as 'path: message'."""
    errors = validator(folder, obj["kind"]).iter_errors(obj)
    return sorted(f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors)
