"""Helpers for the edge tests: inventories written to disk, the ./kit CLI run as a user would."""
import copy
import os
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

VALID = {
    "site": "t1",
    "ssh": {"user": "root", "keyFile": "id_ed25519", "knownHosts": "known_hosts"},
    "k3s": {"version": "v1.37.2+k3s1"},
    "metallb": {"version": "v0.16.1", "addresses": ["10.9.0.200-10.9.0.210"]},
    "nodeSubnet": "10.9.0.0/24",
    "bundle": "bundle",
    "hosts": [
        {"name": "s1", "address": "10.9.0.11", "role": "server", "arch": "x86_64"},
        {"name": "a1", "address": "10.9.0.12", "role": "agent", "arch": "arm64"},
    ],
}


def valid_document() -> dict:
    return copy.deepcopy(VALID)


def kit_state_under(base: Path, monkeypatch) -> Path:
    """Point the kit's local state (XDG_CONFIG_HOME) and HOME under `base`; return the state directory."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(base / "xdg"))
    monkeypatch.setenv("HOME", str(base / "home"))
    return base / "xdg"


def write_inventory(directory: Path, document: dict, name: str = "site.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def kit(*args: str, env: dict | None = None, timeout: float = 600, stdin: str | None = None,
        cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run ./kit with arguments; output captured as text."""
    return subprocess.run([str(REPO / "kit"), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, input=stdin, cwd=cwd)


def lab_site(lab, directory: Path, name: str = "site.yaml", **changes) -> Path:
    """A copy of the lab's inventory with top-level or dotted keys changed (e.g. {"ssh.connectTimeout": 2})."""
    document = yaml.safe_load(lab.site_file.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        target = document
        for part in parents:
            target = target[part]
        target[leaf] = value
    return write_inventory(directory, document, name)


def json_result(done: subprocess.CompletedProcess) -> dict:
    """The JSON object a --json run printed (its last stdout line), by host name."""
    import json
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {h["name"]: h for h in summary["hosts"]}
