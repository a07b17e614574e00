"""Turn Pulumi wire values (protobuf structs) into plain data with secrets masked."""
from typing import Any

from google.protobuf import json_format, struct_pb2

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
MASK = "[secret]"


def plain(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Plain dict of a wire struct; secrets become MASK, unknowns '[unknown]', references their URN."""
    return _unwrap(json_format.MessageToDict(struct))


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            return _mask(value.get("value"))
        if sig == RESOURCE_SIG:
            return value.get("urn")
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if value == UNKNOWN:
        return "[unknown]"
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf structs carry every number as a double
    return value


def _mask(value: Any) -> Any:
    """Hide a secret's values but keep its shape, so a masked manifest still reads as a manifest."""
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return MASK
