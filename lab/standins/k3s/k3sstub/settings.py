"""Build-time settings (version, architecture, timings, config keys) and the host's k3s config.yaml."""
import json
import os
import pkgutil
import socket
import sys
import time
from pathlib import Path

import yaml

CONFIG_FILE = Path("/etc/rancher/k3s/config.yaml")
KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")
NODE_PASSWORD_FILE = Path("/etc/rancher/node/password")
DATA_DIR = Path("/var/lib/rancher/k3s")
SERVER_DIR = DATA_DIR / "server"
TLS_DIR = SERVER_DIR / "tls"
TOKEN_FILE = DATA_DIR / "server" / "token"
AGENT_TOKEN_FILE = DATA_DIR / "server" / "agent-token"
DB_DIR = DATA_DIR / "server" / "db"
ETCD_DIR = DB_DIR / "etcd"             # embedded etcd's data (cluster-init, joined servers); sqlite keeps state.db
RESET_FLAG = DB_DIR / "reset-flag"     # left by --cluster-reset, removed by the next normal start
SNAPSHOT_DIR = DB_DIR / "snapshots"    # etcd-snapshot-dir's default
IMAGES_DIR = DATA_DIR / "agent" / "images"
API_PORT = 6443

BUILD = json.loads(pkgutil.get_data("k3sstub", "build.json"))
VERSION = BUILD["version"]
ARCH = BUILD["arch"]         # Go architecture of this "binary" (amd64, arm64, arm): the kubelet's kubernetes.io/arch
TIMINGS = BUILD["timings"]   # seconds: node_ready, heartbeat, node_lost, rollout, endpoints, webhook_refusal, retry
FLAGS = BUILD["flags"]       # {"server": [...], "agent": [...]} config.yaml keys (k3s flag names)
# like k3s: K3S_* variables (the unit's env file) stand for flags that config.yaml does not set
ENV_KEYS = {"K3S_TOKEN": "token", "K3S_TOKEN_FILE": "token-file", "K3S_URL": "server",
            "K3S_AGENT_TOKEN": "agent-token", "K3S_AGENT_TOKEN_FILE": "agent-token-file",
            "K3S_NODE_NAME": "node-name"}


def log(message: str, level: str = "info") -> None:
    """k3s-style (logrus) log line on stderr, which the unit's journal records."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    escaped = message.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")   # logrus quotes msg
    print(f'time="{stamp}" level={level} msg="{escaped}"', file=sys.stderr, flush=True)


class Fatal(SystemExit):
    """k3s stops with a level=fatal line and exit code 1."""

    def __init__(self, message: str):
        log(message, "fatal")
        super().__init__(1)


def state_file() -> Path:
    """The datastore: etcd's data directory when the server runs embedded etcd, else sqlite's state.db."""
    return ETCD_DIR / "lab-state.json" if ETCD_DIR.is_dir() else DB_DIR / "state.db"


def load_config(command: str, args: list[str] = ()) -> dict:
    """config.yaml (flag names as keys, 'key+' appends) checked like k3s checks it for `command`, then the
    command line's flags, which win (k3s pkg/configfilearg puts config.yaml's flags before the command line's).

    The server drops keys it does not know with a warning; the agent does not filter them and stops with the
    flag parser's error (k3s pkg/configfilearg: only server and etcd-snapshot filter unknown keys)."""
    data = {}
    if CONFIG_FILE.exists():
        data = yaml.safe_load(CONFIG_FILE.read_text()) or {}
        if not isinstance(data, dict):
            log(f"Error: {CONFIG_FILE}: expected a mapping of flag names", "fatal")
            raise SystemExit(1)
    known, config = set(FLAGS["server" if command == "etcd-snapshot" else command]), {}
    for raw, value in data.items():
        key = str(raw).removesuffix("+")
        if key not in known:
            if command == "agent":
                log(f"Error: flag provided but not defined: -{key}", "fatal")
                raise SystemExit(1)
            # k3s pkg/configfilearg/parser.go: logrus.Warnf("Unknown flag %s found in config.yaml, skipping\n", ...)
            log(f"Unknown flag --{key} found in config.yaml, skipping\n", "warning")
            continue
        config[key] = as_list(config.get(key)) + as_list(value) if str(raw).endswith("+") else value
    config.update(parse_flags(args))
    for variable, key in ENV_KEYS.items():
        if os.environ.get(variable) and key in known and key not in config:
            config[key] = os.environ[variable]
    for key in ("token", "agent-token"):
        if not config.get(key) and config.get(f"{key}-file"):
            config[key] = Path(str(config[f"{key}-file"])).read_text().strip()
    return config


def parse_flags(args: list[str]) -> dict:
    """--key=value, --key value and --flag (true) as config keys; other words are left out."""
    flags, i = {}, 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
                value, i = args[i + 1], i + 1
            flags[key] = value if (eq or value) else True
        i += 1
    return flags


def as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def node_ip(config: dict) -> str:
    """node-ip from config, else the address of the interface holding the default route."""
    if config.get("node-ip"):
        return str(as_list(config["node-ip"])[0]).split(",")[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.254", 9))
        return probe.getsockname()[0]


def node_name(config: dict) -> str:
    return str(config.get("node-name") or socket.gethostname()).lower()


def notify_ready() -> None:
    """sd_notify(READY=1): tell the service manager (Type=notify) that k3s is up."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", "\0" + path[1:] if path.startswith("@") else path)
