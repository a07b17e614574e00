"""`k3s server` and `k3s agent`: start-up, joining the first server, heartbeats."""
import json
import os
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.request

import yaml

from k3sstub import api, pki, tokens
from k3sstub.cluster import Cluster
from k3sstub.settings import (KUBECONFIG, TIMINGS, TLS_DIR, TOKEN_FILE, VERSION, as_list,
                              load_config, log, node_ip, node_name)


class Refused(SystemExit):
    """The first server refused this node (wrong token): the unit fails."""


def _write_private(path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, mode)


def node_info(config: dict, role: str) -> dict:
    return {"name": node_name(config), "role": role, "address": node_ip(config),
            "labels": [str(x) for x in as_list(config.get("node-label"))],
            "taints": [str(x) for x in as_list(config.get("node-taint"))],
            "etcd": bool(config.get("cluster-init") or config.get("server")), "version": VERSION}


def _post(url: str, body: dict, ca_pem: str | None, token: str | None = None) -> dict:
    """POST JSON; without a CA the server is trusted on first use (k3s with a short token)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if ca_pem:
        context = ssl.create_default_context(cadata=ca_pem)
        context.check_hostname = False
    else:
        context = ssl._create_unverified_context()
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, context=context, timeout=10) as reply:
        return json.loads(reply.read() or b"{}")


def join(server: str, token: str, info: dict) -> dict:
    """Register with the first server, retrying while it is unreachable; Refused on a bad token."""
    while True:
        try:
            return _post(f"{server}/v1-lab/join", {"token": token, "node": info}, None)
        except urllib.error.HTTPError as err:
            if err.code == 401:
                log(f"Failed to validate connection to cluster at {server}: token rejected "
                    f"by the server (401 Unauthorized)", "fatal")
                raise Refused(1)
            log(f"Waiting to retrieve agent configuration; server is not ready: {err}")
        except OSError as err:
            log(f"Waiting to retrieve agent configuration; server is not ready: {err}")
        time.sleep(TIMINGS["heartbeat"])


def heartbeat_forever(server: str, token: str, info: dict, ca_pem: str) -> None:
    while True:
        time.sleep(TIMINGS["heartbeat"])
        try:
            _post(f"{server}/v1-lab/heartbeat", {"name": info["name"]}, ca_pem, token)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                log(f"node {info['name']} not found in the cluster; registering again")
                join(server, token, info)
        except OSError as err:
            log(f"Failed to reach {server}: {err}", "error")


def _kubeconfig(config: dict) -> None:
    pki.issue(TLS_DIR, "client-admin", "/O=system:masters/CN=system:admin", "clientAuth")
    import base64
    b64 = lambda name: base64.b64encode((TLS_DIR / name).read_bytes()).decode()
    doc = {"apiVersion": "v1", "kind": "Config", "preferences": {},
           "clusters": [{"name": "default", "cluster": {
               "server": "https://127.0.0.1:6443", "certificate-authority-data": b64("server-ca.crt")}}],
           "users": [{"name": "default", "user": {"client-certificate-data": b64("client-admin.crt"),
                                                  "client-key-data": b64("client-admin.key")}}],
           "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
           "current-context": "default"}
    mode = int(str(config.get("write-kubeconfig-mode") or "0600"), 8)
    _write_private(KUBECONFIG, yaml.safe_dump(doc, sort_keys=False), mode)


def _serving_cert(config: dict, address: str) -> None:
    sans = [str(s) for s in as_list(config.get("tls-san"))]
    ips = [address] + [s for s in sans if s.replace(".", "").isdigit()]
    names = [node_name(config)] + [s for s in sans if not s.replace(".", "").isdigit()]
    pki.issue(TLS_DIR, "serving-kube-apiserver", "/CN=kube-apiserver", "serverAuth",
              pki.serving_sans(ips, names))


def _first_server_token(config: dict) -> str:
    """The cluster token: kept across restarts; a different configured token is refused."""
    configured = str(config["token"]) if config.get("token") else None
    ca_hash = pki.ca_hash(TLS_DIR)
    if TOKEN_FILE.exists():
        stored = TOKEN_FILE.read_text().strip()
        if configured and tokens.password(configured) != tokens.password(stored):
            log("bootstrap data already found and encrypted with different token", "fatal")
            raise Refused(1)
        return stored
    token = f"K10{ca_hash}::server:{tokens.password(configured) if configured else secrets.token_hex(16)}"
    _write_private(TOKEN_FILE, token + "\n")
    return token


def run_server() -> int:
    config = load_config()
    info = node_info(config, "server")
    if config.get("server"):
        return _run_joined_server(config, info)
    pki.ensure_ca(TLS_DIR)
    token = _first_server_token(config)
    _serving_cert(config, info["address"])
    _kubeconfig(config)
    cluster = Cluster()
    cluster.register(info)

    def keep_alive():
        while True:
            cluster.heartbeat(info["name"])
            time.sleep(TIMINGS["heartbeat"])
    threading.Thread(target=keep_alive, daemon=True).start()
    log(f"k3s is up and running (lab stand-in {VERSION}); node {info['name']}")
    api.serve(api.Backend(token, pki.ca_hash(TLS_DIR), cluster=cluster,
                          ca_key_pem=(TLS_DIR / "server-ca.key").read_text()))
    return 0


def _run_joined_server(config: dict, info: dict) -> int:
    server, token = str(config["server"]).rstrip("/"), str(config.get("token") or "")
    reply = join(server, token, info)
    TLS_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_private(TLS_DIR / "server-ca.crt", reply["ca_cert"])
    _write_private(TLS_DIR / "server-ca.key", reply["ca_key"])
    _write_private(TOKEN_FILE, reply["token"] + "\n")
    _serving_cert(config, info["address"])
    _kubeconfig(config)
    threading.Thread(target=heartbeat_forever, args=(server, token, info, reply["ca_cert"]),
                     daemon=True).start()
    log(f"k3s server joined {server} (lab stand-in {VERSION}); node {info['name']}")
    api.serve(api.Backend(reply["token"], pki.ca_hash(TLS_DIR), upstream=server))
    return 0


def run_agent() -> int:
    config = load_config()
    server, token = config.get("server"), config.get("token")
    if not server or not token:
        log("--server and --token are required to start an agent", "fatal")
        return 1
    info = node_info(config, "agent")
    reply = join(str(server).rstrip("/"), str(token), info)
    log(f"k3s agent joined {server} (lab stand-in {VERSION}); node {info['name']}")
    heartbeat_forever(str(server).rstrip("/"), str(token), info, reply["ca_cert"])
    return 0
