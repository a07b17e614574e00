"""A stand-in Pulumi CLI for the lifecycle tests: answers what the Automation API sends, keeps state in the backend.

State lives in the directory of PULUMI_BACKEND_URL (file:// only), one JSON file per stack. Stack config lives in
Pulumi.<stack>.yaml in the working directory, as with the real CLI. Every invocation is appended to $STANDIN_LOG as
JSON (argv, and which secret-bearing variables were present in the environment). `up`/`preview`/`refresh`/`destroy`
do not run the program: they record the operation and send the engine events (over gRPC for `tcp://` event logs,
as newer CLIs do, else to the event-log file). A file `fail-<operation>-<stack>` in the backend directory makes that
operation fail for that stack; STANDIN_OPERATION_SECONDS makes each operation take that long (benchmarks).
"""
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

VERSION = os.environ.get("STANDIN_PULUMI_VERSION", "3.272.0")
SECRET_ENV = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "ARM_CLIENT_SECRET")
RESOURCES_PER_STACK = 42


class Failure(Exception):
    """Exit 255 with this message on stderr, as the CLI does."""


def main(argv: list[str]) -> int:
    _log(argv)
    args = [a for a in argv if a != "--non-interactive"]
    try:
        out = dispatch(args)
    except Failure as err:
        print(f"error: {err}", file=sys.stderr)
        return 255
    if out is not None:
        print(out if isinstance(out, str) else json.dumps(out, indent=2))
    return 0


def dispatch(args: list[str]):
    words = [a for a in args if not a.startswith("-")]
    if args[:1] == ["version"]:
        return f"v{VERSION}"
    if args[:1] == ["whoami"]:
        return {"user": "standin", "organizations": [], "url": _backend_url()}
    if args[:2] == ["stack", "ls"]:
        return _stack_ls()
    if args[:2] == ["stack", "select"]:
        _load(_flag(args, "--stack"))
        (_backend() / "current").write_text(_flag(args, "--stack"))
        return None
    if args[:2] == ["stack", "init"]:
        return _stack_init(words[2], _flag(args, "--secrets-provider") or "passphrase")
    if args[:2] == ["stack", "rm"]:
        return _stack_rm(words[2], "--force" in args, "--preserve-config" in args)
    if args[:2] == ["stack", "tag"]:
        return _stack_tag(words[2], words[3:], _flag(args, "--stack"))
    if args[:2] == ["stack", "history"]:
        return _load(_flag(args, "--stack"))["history"][::-1][:int(_flag(args, "--page-size") or 10**6)]
    if args[:2] == ["stack", "output"]:
        return _load(_flag(args, "--stack"))["outputs"]
    if words[:1] and words[0] in ("up", "preview", "refresh", "destroy"):
        return _operation(words[0], args)
    raise Failure(f"stand-in: unsupported command {' '.join(args)!r}")


def _operation(operation: str, args: list[str]):
    name = _flag(args, "--stack")
    state = _load(name)
    if not Path(f"Pulumi.{name}.yaml").exists():
        raise Failure(f"no Pulumi.{name}.yaml in {os.getcwd()}")
    if (_backend() / f"fail-{operation}-{name}").exists():
        _send_events(_flag(args, "--event-log"), {"create": 0})
        raise Failure(f"{operation} failed: resource 'aks-{name}' is still in use (injected failure)")
    time.sleep(float(os.environ.get("STANDIN_OPERATION_SECONDS", "0")))
    before = state["resources"]
    after = {"up": RESOURCES_PER_STACK, "destroy": 0}.get(operation, before)
    changes = _changes(before, after)
    if operation == "preview" and "--expect-no-changes" in args and before != RESOURCES_PER_STACK:
        raise Failure("no changes were expected but changes were proposed")
    _send_events(_flag(args, "--event-log"), changes)
    print(f"{operation.capitalize()} ({name}):")
    if operation != "preview":
        state["resources"] = after
        state["history"].append(_history_entry(operation, changes))
        _save(name, state)
    return f"Resources: {', '.join(f'{op} {n}' for op, n in changes.items())}"


def _changes(before: int, after: int) -> dict[str, int]:
    if after > before:
        return {"create": after - before, "same": before}
    if after < before:
        return {"delete": before - after, "same": after}
    return {"same": before}


def _send_events(target: str | None, changes: dict[str, int]) -> None:
    if not target:
        return
    now = int(time.time())
    events = [{"preludeEvent": {"config": {}}},
              {"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 1, "resourceChanges": changes,
                                "PolicyPacks": {}}},
              {"cancelEvent": {}}]
    lines = [json.dumps({"sequence": i, "timestamp": now, **event}) for i, event in enumerate(events)]
    if target.startswith("tcp://"):
        _stream_over_grpc(target.removeprefix("tcp://"), lines)
    else:
        with open(target, "a", encoding="utf-8") as log:
            log.writelines(line + "\n" for line in lines)


def _stream_over_grpc(address: str, lines: list[str]) -> None:
    import grpc
    from pulumi.runtime.proto import events_pb2, events_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        events_pb2_grpc.EventsStub(channel).StreamEvents(iter(events_pb2.EventRequest(event=line) for line in lines))


def _history_entry(operation: str, changes: dict[str, int]) -> dict:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"kind": "update" if operation == "up" else operation, "startTime": stamp, "endTime": stamp,
            "message": "", "environment": {}, "config": {}, "result": "succeeded", "version": 1,
            "resourceChanges": changes}


def _stack_ls():
    current = (_backend() / "current").read_text() if (_backend() / "current").exists() else ""
    listing = []
    for path in sorted(_stacks_dir().glob("*.json")):
        state = json.loads(path.read_text())
        entry = {"name": f"organization/{_project()}/{path.stem}", "current": path.stem == current,
                 "updateInProgress": False, "resourceCount": state["resources"], "url": _backend_url()}
        if state["history"]:
            entry["lastUpdate"] = state["history"][-1]["endTime"]
        listing.append(entry)
    return listing


def _stack_init(name: str, provider: str):
    if (_stacks_dir() / f"{name}.json").exists():
        raise Failure(f"stack '{name}' already exists")
    if provider == "passphrase" and not (os.environ.get("PULUMI_CONFIG_PASSPHRASE")
                                         or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        raise Failure("passphrase must be set with PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE "
                      "environment variables")
    config_file = Path(f"Pulumi.{name}.yaml")
    document = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    document = {("secretsprovider" if provider != "passphrase" else "encryptionsalt"):
                provider if provider != "passphrase" else "v1:standin-salt", **(document or {})}
    config_file.write_text(yaml.safe_dump(document, sort_keys=False))
    _save(name, {"tags": {"pulumi:project": _project()}, "history": [], "resources": 0, "outputs": {},
                 "secretsProvider": provider})
    (_backend() / "current").write_text(name)
    return f"Created stack '{name}'"


def _stack_rm(name: str, force: bool, preserve_config: bool):
    state = _load(name)
    if state["resources"] and not force:
        raise Failure(f"'{name}' still has resources; removal rejected. Possible actions: ...")
    (_stacks_dir() / f"{name}.json").unlink()
    if not preserve_config:
        Path(f"Pulumi.{name}.yaml").unlink(missing_ok=True)
    return f"Stack '{name}' has been removed!"


def _stack_tag(verb: str, rest: list[str], name: str):
    state = _load(name)
    if verb == "ls":
        return state["tags"]
    if verb == "get":
        if rest[0] not in state["tags"]:
            raise Failure(f"stack tag '{rest[0]}' not found for stack '{name}'")
        return state["tags"][rest[0]]
    if verb == "set":
        state["tags"][rest[0]] = rest[1]
    elif verb == "rm":
        state["tags"].pop(rest[0], None)
    else:
        raise Failure(f"stand-in: unsupported stack tag {verb}")
    _save(name, state)
    return None


def _flag(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _backend_url() -> str:
    url = os.environ.get("PULUMI_BACKEND_URL", "")
    if not url.startswith("file://"):
        raise Failure(f"stand-in: only file:// backends, not {url!r}")
    return url


def _backend() -> Path:
    return Path(_backend_url().removeprefix("file://"))


def _project() -> str:
    return yaml.safe_load(Path("Pulumi.yaml").read_text())["name"]


def _stacks_dir() -> Path:
    path = _backend() / ".pulumi" / "stacks" / _project()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load(name: str | None) -> dict:
    path = _stacks_dir() / f"{name}.json"
    if not name or not path.exists():
        raise Failure(f"no stack named '{name}' found")
    return json.loads(path.read_text())


def _save(name: str, state: dict) -> None:
    path = _stacks_dir() / f"{name}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    os.replace(temporary, path)


def _login() -> dict:
    """How the engine would sign in to Azure: the default-credential switch and the federated token it reads."""
    token_file = os.environ.get("AZURE_FEDERATED_TOKEN_FILE")
    return {"default_credential": os.environ.get("ARM_USE_DEFAULT_AZURE_CREDENTIAL"),
            "client_id": os.environ.get("AZURE_CLIENT_ID"),
            "federated_token": open(token_file, encoding="utf-8").read() if token_file else None}


def _log(argv: list[str]) -> None:
    log = os.environ.get("STANDIN_LOG")
    if log:
        record = {"argv": argv, "cwd": os.getcwd(), "secret_env": [k for k in SECRET_ENV if os.environ.get(k)],
                  "login": _login()}
        with open(log, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
