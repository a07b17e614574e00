"""The HTTPS API on :6443: health, nodes, join/heartbeat and kubectl, or a proxy to the first server."""
import json
import ssl
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from k3sstub import kubectl, tokens
from k3sstub.settings import API_PORT, TLS_DIR, VERSION

PUBLIC = {"/readyz", "/livez", "/healthz", "/version", "/v1-lab/join"}


class Backend:
    """What the API serves: the cluster itself (first server) or a proxy to it (joined server)."""

    def __init__(self, token: str, ca_hash: str, cluster=None, upstream: str | None = None,
                 ca_key_pem: str = ""):
        self.token, self.ca_hash, self.cluster = token, ca_hash, cluster
        self.upstream, self.ca_key_pem = upstream, ca_key_pem
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

        def _authenticated(self) -> bool:
            if self.connection.getpeercert():
                return True
            auth = self.headers.get("Authorization", "")
            return auth.startswith("Bearer ") and \
                tokens.accepts(backend.token, auth[7:], backend.ca_hash)

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def do_GET(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

        def _dispatch(self, method: str):
            path = self.path.split("?")[0]
            if path not in PUBLIC and not self._authenticated():
                return self._send(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "message": "Unauthorized", "reason": "Unauthorized",
                                        "code": 401})
            body = self._body() if method == "POST" else {}
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
    if method == "POST" and path == "/v1-lab/kubectl":
        code, out, err = kubectl.execute(cluster, body.get("args", []), body.get("stdin", ""))
        return 200, {"code": code, "stdout": out, "stderr": err}
    return 404, {"kind": "Status", "message": "the server could not find the requested resource",
                 "code": 404}


def _join(backend: Backend, body: dict) -> tuple[int, object]:
    if not tokens.accepts(backend.token, body.get("token"), backend.ca_hash):
        return 401, {"message": "token rejected: the token does not match this cluster"}
    node = body["node"]
    backend.cluster.register(node)
    reply = {"ca_cert": backend.ca_pem, "token": backend.token}
    if node["role"] == "server":
        reply["ca_key"] = backend.ca_key_pem
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


def serve(backend: Backend) -> None:
    """Serve HTTPS on 0.0.0.0:6443 until the process is stopped."""
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
    server.serve_forever()
