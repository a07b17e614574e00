"""Build-time settings (version, timings) and the host's k3s config.yaml."""
import json
import pkgutil
import socket
from pathlib import Path

import yaml

CONFIG_FILE = Path("/etc/rancher/k3s/config.yaml")
KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")
DATA_DIR = Path("/var/lib/rancher/k3s")
TLS_DIR = DATA_DIR / "server" / "tls"
TOKEN_FILE = DATA_DIR / "server" / "token"
STATE_FILE = DATA_DIR / "server" / "db" / "lab-state.json"
API_PORT = 6443

BUILD = json.loads(pkgutil.get_data("k3sstub", "build.json"))
VERSION = BUILD["version"]
TIMINGS = BUILD["timings"]   # seconds: node_ready, heartbeat, node_lost, rollout, endpoints, webhook_refusal


def load_config() -> dict:
    """config.yaml as a dict (flag names as keys); empty when the file is absent."""
    if not CONFIG_FILE.exists():
        return {}
    data = yaml.safe_load(CONFIG_FILE.read_text()) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"{CONFIG_FILE}: expected a mapping of flag names")
    return data


def as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def node_ip(config: dict) -> str:
    """node-ip from config, else the address of the interface holding the default route."""
    if config.get("node-ip"):
        return str(as_list(config["node-ip"])[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.254", 9))
        return probe.getsockname()[0]


def node_name(config: dict) -> str:
    return str(config.get("node-name") or socket.gethostname())


def log(message: str, level: str = "info") -> None:
    """k3s-style log line on stderr (the unit's log)."""
    import sys
    import time
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f'time="{stamp}" level={level} msg="{message}"', file=sys.stderr, flush=True)
