"""`k3s server` and `k3s agent`: start-up, joining, readiness (sd_notify), heartbeats.

Log lines have the shape of the real k3s messages (k3s pkg/agent/run.go "Failed to validate connection to
cluster at ...", pkg/agent/config/config.go "Waiting to retrieve agent configuration; server is not ready: ...",
"Node password rejected, ...", pkg/clientaccess "token CA hash does not match the Cluster CA certificate hash").
An agent retries forever and never exits on a bad token or an unreachable server (so a Type=notify start never
returns); a server that cannot start exits with a fatal line (the unit's Restart=always starts it again)."""
import base64
import hashlib
import json
import os
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.request

import yaml

from k3sstub import api, bootstrap, images, pki, snapshot, tokens
from k3sstub.cluster import Cluster
from k3sstub.settings import (AGENT_TOKEN_FILE, ARCH, ETCD_DIR, KUBECONFIG, NODE_PASSWORD_FILE, RESET_FLAG,
                              TIMINGS, TLS_DIR, TOKEN_FILE, VERSION, Fatal, as_list, load_config, log, node_ip,
                              node_name, notify_ready)

NODE_PASSWORD_REJECTED = (f"Node password rejected, duplicate hostname or contents of '{NODE_PASSWORD_FILE}' may "
                          "not match server node-passwd entry, try enabling a unique node name with the "
                          "--with-node-id flag")


def _write_private(path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, mode)


def node_password() -> str:
    """/etc/rancher/node/password: made once per host (0600), sent with every join (k3s ensureNodePassword)."""
    if NODE_PASSWORD_FILE.exists():
        return NODE_PASSWORD_FILE.read_text().strip()
    password = secrets.token_hex(16)
    _write_private(NODE_PASSWORD_FILE, password + "\n")
    return password


def node_info(config: dict, role: str) -> dict:
    return {"name": node_name(config), "role": role, "address": node_ip(config), "arch": ARCH,
            "labels": [str(x) for x in as_list(config.get("node-label"))],
            "taints": [str(x) for x in as_list(config.get("node-taint"))],
            "etcd": bool(config.get("cluster-init") or config.get("server")), "version": VERSION}


# --- talking to a server ---------------------------------------------------------------------
def _go_error(err: Exception, url: str) -> str:
    """A connection error worded like Go's net package ("dial tcp 10.0.0.1:6443: connect: connection refused")."""
    reason = getattr(err, "reason", err)
    where = url.split("//", 1)[-1].split("/", 1)[0]
    if isinstance(reason, ConnectionRefusedError):
        return f"dial tcp {where}: connect: connection refused"
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return f"dial tcp {where}: i/o timeout"
    if getattr(reason, "errno", None) == 113:
        return f"dial tcp {where}: connect: no route to host"
    return str(reason)


def _request(url: str, body: dict | None, ca_pem: str | None, token: str | None = None) -> bytes:
    """GET (body None) or POST JSON; without a CA the server is not verified (as k3s before it checked the CA)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if ca_pem:
        context = ssl.create_default_context(cadata=ca_pem)
        context.check_hostname = False
    else:
        context = ssl._create_unverified_context()
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, context=context, timeout=3) as reply:
        return reply.read()


def validate_connection(server: str, token: str, fatal: bool) -> str:
    """The cluster CA from /cacerts, checked against the token's CA hash; retried every 2 s (agent) or fatal."""
    expected, _ = tokens.parse(token)
    while True:
        try:
            ca_pem = _request(f"{server}/cacerts", None, None).decode()
            actual = hashlib.sha256(ca_pem.encode()).hexdigest()
            if expected is None or expected == actual:
                return ca_pem
            problem = f"token CA hash does not match the Cluster CA certificate hash: {expected} != {actual}"
        except OSError as err:
            problem = f'failed to get CA certs: Get "{server}/cacerts": {_go_error(err, server)}'
        if fatal:
            raise Fatal(f"starting kubernetes: preparing server: {problem}")
        log(f"Failed to validate connection to cluster at {server}: {problem}", "error")
        time.sleep(TIMINGS["retry"])


def join(server: str, token: str, info: dict, ca_pem: str) -> dict:
    """Node configuration from the cluster; retried while refused (an agent never gives up, as in k3s)."""
    body = {"token": token, "node": info, "password": node_password()}
    while True:
        try:
            return json.loads(_request(f"{server}/v1-lab/join", body, ca_pem) or b"{}")
        except urllib.error.HTTPError as err:
            if err.code == 401 and info["role"] == "server":
                raise Fatal(f"starting kubernetes: preparing server: failed to bootstrap cluster data: "
                            f"{server}/v1-k3s/server-bootstrap: 401 Unauthorized")
            problem = NODE_PASSWORD_REJECTED if err.code == 403 else (
                f"failed to retrieve configuration from server: {server}/v1-k3s/config: {err.code} {err.reason}")
        except OSError as err:
            problem = f'failed to get CA certs: Get "{server}/cacerts": {_go_error(err, server)}'
        log(f"Waiting to retrieve agent configuration; server is not ready: {problem}")
        time.sleep(TIMINGS["retry"])


def heartbeat_forever(server: str, token: str, info: dict, ca_pem: str) -> None:
    while True:
        time.sleep(TIMINGS["heartbeat"])
        try:
            _request(f"{server}/v1-lab/heartbeat", {"name": info["name"]}, ca_pem, token)
        except urllib.error.HTTPError as err:
            if err.code == 404:   # the node object was deleted: a running kubelet registers it again
                log(f"node {info['name']} not found in the cluster; registering again")
                join(server, token, info, ca_pem)
        except OSError as err:
            log(f"Failed to reach {server}: {_go_error(err, server)}", "error")


# --- server files ----------------------------------------------------------------------------
def _kubeconfig(config: dict) -> None:
    pki.issue(TLS_DIR, "client-admin", "/O=system:masters/CN=system:admin", "clientAuth")
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


def _check_ca_hash(token: str, ca_hash: str) -> None:
    """A secure token can only name this cluster's CA: a new cluster's self-signed CA cannot be known in
    advance, so only the short form seeds one (k3s docs/cli/token.md)."""
    given, _ = tokens.parse(token)
    if given is not None and given != ca_hash:
        raise Fatal("starting kubernetes: preparing server: token CA hash does not match the Cluster CA "
                    f"certificate hash: {given} != {ca_hash}")


def server_password(config: dict) -> str:
    """The server token's password: configured (config.yaml or --token), else the token file's, else a new one;
    a configured token other than the stored one is refused."""
    configured = tokens.password(str(config["token"])) if config.get("token") else None
    stored = tokens.password(TOKEN_FILE.read_text()) if TOKEN_FILE.exists() else None
    if configured and stored and configured != stored:
        raise Fatal(f"starting kubernetes: preparing server: {bootstrap.WRONG_TOKEN}")
    return configured or stored or secrets.token_hex(16)


def _first_server_tokens(config: dict, cluster: Cluster) -> tuple[str, str | None]:
    """(server token, agent token or None): the CA from the datastore's bootstrap data (or a new one stored
    there), the token file written with that CA's hash."""
    password = server_password(config)
    try:
        bootstrap.reconcile(cluster, password)
    except bootstrap.WrongToken as err:
        raise Fatal(f"starting kubernetes: preparing server: {err}") from None
    ca_hash = pki.ca_hash(TLS_DIR)
    if config.get("token"):
        _check_ca_hash(str(config["token"]), ca_hash)
    token = tokens.secure(ca_hash, "server", password)
    if not TOKEN_FILE.exists() or TOKEN_FILE.read_text().strip() != token:
        _write_private(TOKEN_FILE, token + "\n")
    return token, _agent_token(config, ca_hash, token)


def _agent_token(config: dict, ca_hash: str, server_token: str) -> str | None:
    """agent-token file: the configured agent token in secure form, else a link to the server token."""
    configured = str(config["agent-token"]) if config.get("agent-token") else None
    if configured is None:
        if not AGENT_TOKEN_FILE.is_symlink():
            AGENT_TOKEN_FILE.unlink(missing_ok=True)
            AGENT_TOKEN_FILE.symlink_to(TOKEN_FILE.name)
        return None
    _check_ca_hash(configured, ca_hash)
    token = tokens.secure(ca_hash, "node", tokens.password(configured))
    _write_private(AGENT_TOKEN_FILE, token + "\n")
    return token


# --- commands --------------------------------------------------------------------------------
def run_server(args: list[str] = ()) -> int:
    config = load_config("server", args)
    if config.get("cluster-reset"):
        return snapshot.cluster_reset(config)
    info = node_info(config, "server")
    RESET_FLAG.unlink(missing_ok=True)   # "deleted when K3s starts normally" (docs/cli/etcd-snapshot.md)
    if config.get("server"):
        return _run_joined_server(config, info)
    if config.get("cluster-init"):
        ETCD_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    cluster = Cluster()
    token, agent_token = _first_server_tokens(config, cluster)
    _serving_cert(config, info["address"])
    _kubeconfig(config)
    pki.write_agent_certs(pki.agent_certs(TLS_DIR, info["name"], info["address"]))   # its own agent's
    if not cluster.register(info, node_password()):
        log(f"Waiting to retrieve agent configuration; server is not ready: {NODE_PASSWORD_REJECTED}")

    def keep_alive():
        while True:
            cluster.heartbeat(info["name"])
            time.sleep(TIMINGS["heartbeat"])
    threading.Thread(target=keep_alive, daemon=True).start()
    images.start()

    def ready():
        log(f"k3s is up and running (lab stand-in {VERSION}); node {info['name']}")
        notify_ready()
    snapshot.start_schedule(config, info["name"])
    api.serve(api.Backend(token, agent_token, cluster=cluster), ready)
    return 0


def _run_joined_server(config: dict, info: dict) -> int:
    server, token = str(config["server"]).rstrip("/"), str(config.get("token") or "")
    if not token:
        raise Fatal("starting kubernetes: preparing server: token is required to join a cluster")
    ca_pem = validate_connection(server, token, fatal=True)
    reply = join(server, token, info, ca_pem)
    pki.write_agent_certs(reply["certs"])
    bootstrap.reconcile_files(reply["bootstrap"])   # httpBootstrap: the first server's files
    _check_membership(reply.get("generation"))
    _write_private(TOKEN_FILE, reply["token"] + "\n")
    if reply.get("agent_token"):
        _write_private(AGENT_TOKEN_FILE, reply["agent_token"] + "\n")
    _serving_cert(config, info["address"])
    _kubeconfig(config)
    threading.Thread(target=heartbeat_forever, args=(server, token, info, reply["ca_cert"]),
                     daemon=True).start()
    images.start()
    snapshot.start_schedule(config, info["name"])

    def ready():
        log(f"k3s server joined {server} (lab stand-in {VERSION}); node {info['name']}")
        notify_ready()
    api.serve(api.Backend(reply["token"], reply.get("agent_token"), upstream=server), ready)
    return 0


def _check_membership(generation: str | None) -> None:
    """A joined server's etcd member belongs to the cluster generation it joined; after a cluster reset the old
    member is gone, so a server still holding its data cannot rejoin until its db directory is removed (docs:
    "Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes")."""
    member = ETCD_DIR / "lab-member"
    if member.exists() and member.read_text().strip() != generation:
        raise Fatal("starting kubernetes: preparing server: etcd: this server's data belongs to an etcd cluster "
                    "it is no longer a member of (the member has been permanently removed from the cluster); "
                    f"delete {ETCD_DIR.parent} and start k3s again to rejoin")
    ETCD_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    member.write_text(f"{generation}\n")


def run_agent() -> int:
    config = load_config("agent")
    server, token = config.get("server"), config.get("token")
    if not server:
        raise Fatal("Error: --server is required")
    if not token:
        raise Fatal("Error: --token is required")
    server, token = str(server).rstrip("/"), str(token)
    info = node_info(config, "agent")
    ca_pem = validate_connection(server, token, fatal=False)
    reply = join(server, token, info, ca_pem)
    pki.write_agent_certs(reply["certs"])
    images.start()
    log(f"k3s agent joined {server} (lab stand-in {VERSION}); node {info['name']}")
    notify_ready()
    heartbeat_forever(server, token, info, reply["ca_cert"])
    return 0
