"""The HTTPS API on :6443: health, nodes, join/heartbeat and kubectl, or a proxy to the first server."""
import json
import ssl
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from k3sstub import bootstrap, kubectl, pki, tokens
from k3sstub.settings import API_PORT, ETCD_DIR, TLS_DIR, VERSION

PUBLIC = {"/cacerts", "/readyz", "/livez", "/healthz", "/version", "/v1-lab/join"}


class Backend:
    """What the API serves: the cluster itself (first server) or a proxy to it (joined server)."""

    def __init__(self, token: str, agent_token: str | None, cluster=None, upstream: str | None = None):
        self.token, self.agent_token, self.cluster, self.upstream = token, agent_token, cluster, upstream
        self.ca_pem = (TLS_DIR / "server-ca.crt").read_text()


def _handler(backend: Backend):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep the unit log quiet
            pass

        def _send(self, code: int, body, content_type="application/json"):
            data = body if isinstance(body, bytes) else (
                body.encode() if isinstance(body, str) else json.dumps(body).encode())
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authenticated(self, path: str) -> bool:
            """Client certificate, or a bearer token: the server token, or the agent token for node calls."""
            if self.connection.getpeercert():
                return True
            auth = self.headers.get("Authorization", "")
            role = "agent" if path == "/v1-lab/heartbeat" else "server"
            return auth.startswith("Bearer ") and \
                tokens.accepts(backend.token, backend.agent_token, auth[7:], role)

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def do_GET(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

        def _dispatch(self, method: str):
            path = self.path.split("?")[0]
            if path not in PUBLIC and not self._authenticated(path):
                return self._send(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "message": "Unauthorized", "reason": "Unauthorized",
                                        "code": 401})
            body = self._body() if method == "POST" else {}
            if path == "/cacerts":   # served by every server, unauthenticated (agents check its hash)
                return self._send(200, backend.ca_pem, "text/plain")
            if backend.upstream:
                return self._send(*_forward(backend, method, path, body))
            self._send(*_serve(backend, method, path, body))

    return Handler


def _serve(backend: Backend, method: str, path: str, body: dict) -> tuple[int, object]:
    cluster = backend.cluster
    if path in ("/readyz", "/livez", "/healthz"):
        return 200, "ok"
    if path == "/version":
        return 200, {"gitVersion": VERSION, "platform": "linux/amd64"}
    if path == "/api/v1/nodes":
        return 200, cluster.node_list()
    if path.startswith("/api/v1/nodes/"):
        name = path.rsplit("/", 1)[1]
        with cluster.lock:
            if name in cluster.nodes:
                return 200, cluster.node_object(name)
        return 404, {"kind": "Status", "message": f'nodes "{name}" not found', "code": 404}
    if method == "POST" and path == "/v1-lab/join":
        return _join(backend, body)
    if method == "POST" and path == "/v1-lab/heartbeat":
        return (200, {}) if cluster.heartbeat(body.get("name", "")) else (404, {})
    if path == "/v1-lab/datastore":   # what `k3s etcd-snapshot save` asks the server for
        if not ETCD_DIR.is_dir():
            return 500, {"message": "etcd datastore disabled"}
        with cluster.lock:
            return 200, {"state": cluster.dump()}
    if method == "POST" and path == "/v1-lab/kubectl":
        code, out, err = kubectl.execute(cluster, body.get("args", []), body.get("stdin", ""))
        return 200, {"code": code, "stdout": out, "stderr": err}
    return 404, {"kind": "Status", "message": "the server could not find the requested resource",
                 "code": 404}


def _join(backend: Backend, body: dict) -> tuple[int, object]:
    """Node config for a joining node: 401 for a token that may not join this role, 403 for a node password
    that does not match the one the cluster keeps for that node name (k3s pkg/nodepassword)."""
    node = body["node"]
    if not tokens.accepts(backend.token, backend.agent_token, body.get("token"), node["role"]):
        return 401, {"message": "401 Unauthorized"}
    if not backend.cluster.register(node, body.get("password", "")):
        return 403, {"message": "403 Forbidden"}
    reply = {"ca_cert": backend.ca_pem, "certs": pki.agent_certs(TLS_DIR, node["name"], node["address"])}
    if node["role"] == "server":
        reply.update(bootstrap=bootstrap.read_disk(), token=backend.token, agent_token=backend.agent_token,
                     generation=backend.cluster.generation)
    return 200, reply


def _forward(backend: Backend, method: str, path: str, body: dict) -> tuple[int, object]:
    data = json.dumps(body).encode() if method == "POST" else None
    request = urllib.request.Request(backend.upstream + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {backend.token}",
                                              "Content-Type": "application/json"})
    context = ssl.create_default_context(cadata=backend.ca_pem)
    context.check_hostname = False
    try:
        with urllib.request.urlopen(request, context=context, timeout=600) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError as err:
        return 503, {"kind": "Status", "message": f"upstream server unavailable: {err}", "code": 503}


def serve(backend: Backend, on_ready=lambda: None) -> None:
    """Serve HTTPS on 0.0.0.0:6443 until the process is stopped; `on_ready` runs once the port listens."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS_DIR / "serving-kube-apiserver.crt",
                            TLS_DIR / "serving-kube-apiserver.key")
    context.load_verify_locations(TLS_DIR / "server-ca.crt")
    context.verify_mode = ssl.CERT_OPTIONAL
    server = ThreadingHTTPServer(("0.0.0.0", API_PORT), _handler(backend))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    threading.current_thread().name = "apiserver"
    on_ready()
    server.serve_forever()
