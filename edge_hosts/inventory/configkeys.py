"""config.yaml keys checked per role against k3s's own flags (edge_hosts/inventory/k3s_keys.yaml), before any host is
touched: unknown and server-only keys, keys k3s removed (naming what replaced them) and keys that defeat the kit's
checks (`log`)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from common import yamlio

KEYS_FILE = Path(__file__).with_name("k3s_keys.yaml")
# keys the kit writes itself, per host and from its secrets: never taken from the inventory
KIT_KEYS = {"token": "the kit's site tokens", "token-file": "the kit's site tokens",
            "agent-token": "the kit's site tokens", "agent-token-file": "the kit's site tokens",
            "server": "apiEndpoint or the first server", "cluster-init": "the number of servers",
            "node-name": "hosts[].name", "node-ip": "hosts[].address", "node-label": "hosts[].labels",
            "node-taint": "hosts[].taints"}
# inventory section -> the k3s command(s) that read it: nodeConfig reaches servers and agents (both run kubelets)
SECTIONS = {"serverConfig": ("server",), "agentConfig": ("agent",), "nodeConfig": ("agent", "server")}


@lru_cache(maxsize=1)
def _data() -> dict:
    return yamlio.load(KEYS_FILE.read_text())


def known_keys() -> dict[str, frozenset[str]]:
    """k3s flag names per command, and the values `disable` accepts."""
    return {name: frozenset(_data()[name]) for name in ("server", "agent", "disable")}


def _special(name: str) -> str | None:
    """Why a key k3s removed, or one that defeats the kit's checks, is refused (None for any other key)."""
    removed, refused = _data()["removed"], _data()["refused"]
    if name in refused:
        return f"'{name}' {refused[name]}"
    if name in removed:
        return f"'{name}' was removed from k3s: {removed[name]}"
    return None


def problems(k3s_section: dict) -> list[tuple[str, str]]:
    """(key path, problem) for every key of serverConfig, agentConfig and nodeConfig k3s would refuse or drop."""
    keys = known_keys()
    found = []
    for section, commands in SECTIONS.items():
        config = k3s_section.get(section)
        if not isinstance(config, dict):
            continue  # a wrong type is reported by the model
        for key, value in config.items():
            where, name = f"k3s.{section}.{key}", str(key).removesuffix("+")
            if name in KIT_KEYS:
                found.append((where, f"set by the kit (from {KIT_KEYS[name]}); remove it here"))
            elif _special(name):
                found.append((where, _special(name)))
            elif "agent" in commands and name not in keys["agent"] and name in keys["server"]:
                found.append((where, f"'{name}' is a server-only k3s flag: the agent stops on it "
                                     f"(flag provided but not defined); put it in k3s.serverConfig"))
            elif any(name not in keys[c] for c in commands):
                found.append((where, f"'{name}' is not a k3s {' or '.join(commands)} flag"))
            elif name == "disable":
                found += [(where, f"'{item}' is not something k3s can disable ({', '.join(sorted(keys['disable']))})")
                          for item in _items(value) if item not in keys["disable"]]
    return found


def _items(value) -> list[str]:
    """A list flag's items: a YAML list, or one comma-separated string."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return [part.strip() for part in str(value).split(",") if part.strip()]
