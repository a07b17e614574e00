"""A local stand-in for the Azure DevOps REST API parts the agents use (test-only).

Serves `/{org}/_apis/distributedtask/...` on 127.0.0.1 with Basic auth, continuation-token
pagination, agent packages, plus a private `/_standin/...` channel the stand-in agent uses
to go online, take jobs and finish them (the real listener long-polls a message queue).
"""
import base64
import io
import json
import tarfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SIGNIN = "https://spsprodweu5.vssps.visualstudio.com/_signin?realm=dev.azure.com"


@dataclass
class StandinState:
    org: str = "contoso"
    valid_tokens: set[str] = field(default_factory=lambda: {"pat-good-0123456789"})
    expired_tokens: set[str] = field(default_factory=set)     # answered with a sign-in redirect
    signin_page_tokens: set[str] = field(default_factory=set)  # answered 203 + an HTML page
    unscoped_tokens: set[str] = field(default_factory=set)    # answered with 403
    pools: dict[int, str] = field(default_factory=lambda: {7: "edge-arm64"})
    agents: dict[int, dict[int, dict]] = field(default_factory=dict)  # pool id -> id -> agent
    page_size: int = 100
    refuse_removals: int = 0              # DELETE answers 409 this many times first
    unavailable: bool = False             # the listener's job channel answers 503 (a connection loss)
    jobs: list[dict] = field(default_factory=list)
    packages: dict[str, bytes] = field(default_factory=dict)  # platform -> tar.gz
    federated_assertion: str = "federated-jwt-from-kubelet"   # accepted by the Entra stand-in
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    timeline: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic s, method, path) per request
    bodies: list[tuple[str, str, dict]] = field(default_factory=list)     # (method, path, JSON body) of REST calls
    next_id: int = 100
    lock: threading.RLock = field(default_factory=threading.RLock)

    def add_agent(self, pool_id: int, name: str, status: str = "offline", age_hours: float = 0,
                  busy: bool = False, **extra) -> dict:
        with self.lock:
            self.next_id += 1
            created = datetime.now(timezone.utc) - timedelta(hours=age_hours)
            agent = {"id": self.next_id, "name": name, "status": status, "enabled": True,
                     "version": extra.pop("version", "4.264.2"),
                     "createdOn": created.isoformat().replace("+00:00", "Z"),
                     "systemCapabilities": extra.pop("systemCapabilities", {}),
                     "userCapabilities": extra.pop("userCapabilities", {}), **extra}
            if busy:
                agent["assignedRequest"] = {"requestId": 1}
            self.agents.setdefault(pool_id, {})[agent["id"]] = agent
            return agent

    def describe(self) -> str:
        """A one-screen summary for a test that timed out: agents, queued jobs, the last requests."""
        with self.lock:
            agents = [{k: a.get(k) for k in ("id", "name", "status", "enabled")}
                      for pool in self.agents.values() for a in pool.values()]
            last = [f"{method} {path}" for _, method, path in self.timeline[-8:]]
            return f"agents={agents} queued_jobs={len(self.jobs)} unavailable={self.unavailable} last_requests={last}"

    def agent_named(self, name: str) -> dict | None:
        with self.lock:
            for pool in self.agents.values():
                for agent in pool.values():
                    if agent["name"] == name:
                        return agent
        return None


def package_tarball(agent_dir: Path) -> bytes:
    """A .tar.gz of a stand-in agent package, laid out like the real one."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(agent_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(agent_dir)), recursive=False)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    server: "AzdoStandin"

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, code: int, payload=None, headers: dict | None = None, raw: bytes = b"",
               content_type: str = "application/json"):
        body = json.dumps(payload).encode() if payload is not None else raw
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _token(self) -> str:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return ""
        return base64.b64decode(auth[6:]).decode().partition(":")[2]

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        with self.server.state.lock:
            self.server.state.bodies.append((self.command, urllib.parse.urlsplit(self.path).path, body))
        return body

    def _route(self, method: str):
        state = self.server.state
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = [p for p in url.path.split("/") if p]
        with state.lock:
            state.requests.append((method, url.path, query))
            state.timeline.append((time.monotonic(), method, url.path))
        if parts[:1] == ["_standin"]:
            return self._standin(method, parts[1:], query)
        if parts[:1] == ["_entra"]:
            return self._entra_token()
        if not parts or parts[0] != state.org or parts[1:2] != ["_apis"]:
            return self._reply(404, {"message": "not found"})
        token = self._token()
        if token in state.expired_tokens or not token:
            return self._reply(302, headers={"Location": SIGNIN})
        if token in state.signin_page_tokens:
            return self._reply(203, raw=b"<html>Sign in</html>", content_type="text/html")
        if token in state.unscoped_tokens:
            return self._reply(403, {"message": "TF400813: not authorized"})
        if token not in state.valid_tokens:
            return self._reply(401, raw=b"", content_type="text/html")
        if "api-version" not in query:
            return self._reply(400, {"message": "api-version missing"})
        return self._api(method, parts[2:], query)

    def _api(self, method: str, parts: list[str], query: dict):
        state = self.server.state
        if parts[:3] == ["distributedtask", "packages", "agent"]:
            platform = query.get("platform", "")
            if platform not in state.packages:
                return self._reply(200, {"count": 0, "value": []})
            host, port = self.server.server_address[:2]
            return self._reply(200, {"count": 1, "value": [{
                "platform": platform, "type": "agent", "version": {"major": 4},
                "downloadUrl": f"http://{host}:{port}/_standin/packages/{platform}.tar.gz"}]})
        if parts == ["distributedtask", "pools"]:
            pools = [{"id": i, "name": n} for i, n in state.pools.items()
                     if n.lower() == query.get("poolName", n).lower()]
            return self._reply(200, {"count": len(pools), "value": pools})
        if parts[:2] != ["distributedtask", "pools"] or len(parts) < 4 or parts[3] != "agents":
            return self._reply(404, {"message": "no such route"})
        pool_id = int(parts[2])
        if pool_id not in state.pools:
            return self._reply(404, {"message": f"pool {pool_id} not found"})
        return self._agents(method, pool_id, parts[4:], query)

    def _agents(self, method: str, pool_id: int, rest: list[str], query: dict):
        state = self.server.state
        with state.lock:
            pool = state.agents.setdefault(pool_id, {})
            if method == "GET" and not rest:
                return self._list_agents(pool, query)
            if method == "POST" and not rest:
                body = self._body()
                if any(a["name"] == body.get("name") for a in pool.values()):
                    return self._reply(409, {"message": "agent exists"})
                agent = state.add_agent(pool_id, body["name"], **{
                    k: v for k, v in body.items() if k not in ("name", "status")})
                return self._reply(200, agent)
            agent_id = int(rest[0]) if rest else -1
            if agent_id not in pool:
                return self._reply(404, {"message": "agent not found"})
            if method == "DELETE":
                if state.refuse_removals > 0:
                    state.refuse_removals -= 1
                    return self._reply(409, {"message": "agent is running a job"})
                del pool[agent_id]
                return self._reply(204)
            if method == "PATCH":
                pool[agent_id].update(self._body())
                return self._reply(200, pool[agent_id])
            if method == "PUT" and rest[1:] == ["usercapabilities"]:
                pool[agent_id]["userCapabilities"] = self._body()
                return self._reply(200, pool[agent_id])
        return self._reply(405, {"message": "method not allowed"})

    def _list_agents(self, pool: dict, query: dict):
        state = self.server.state
        agents = sorted(pool.values(), key=lambda a: a["id"])
        if "agentName" in query:
            agents = [a for a in agents if a["name"] == query["agentName"]]
        start = int(query.get("continuationToken", 0))
        page = agents[start:start + state.page_size]
        headers = {}
        if start + state.page_size < len(agents):
            headers["x-ms-continuationtoken"] = str(start + state.page_size)
        return self._reply(200, {"count": len(page), "value": page}, headers)

    def _entra_token(self):
        """Entra ID token endpoint: client credentials with a secret or a federated assertion."""
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        proof = form.get("client_assertion") or form.get("client_secret")
        if form.get("scope") != "499b84ac-1321-427f-aa17-267ca6975798/.default" or proof not in (
                state.federated_assertion, "sp-client-secret"):
            return self._reply(400, {"error": "invalid_client"})
        token = f"entra-access-token-for-{form['client_id']}"
        with state.lock:
            state.valid_tokens.add(token)
        return self._reply(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": token})

    def _standin(self, method: str, parts: list[str], query: dict):
        """The stand-in agent's private channel (no auth: it stands for the agent's own session)."""
        state = self.server.state
        if parts[:1] == ["packages"]:
            platform = parts[1].removesuffix(".tar.gz")
            return self._reply(200, raw=state.packages[platform], content_type="application/gzip")
        agent = state.agent_named(query.get("agent", ""))
        if agent is None:
            return self._reply(404, {"message": "unknown agent"})
        with state.lock:
            if parts == ["status"]:
                agent["status"] = query["status"]
                return self._reply(200, agent)
            if parts == ["next-job"] and state.unavailable:
                return self._reply(503, {"message": "service unavailable"})
            if parts == ["next-job"]:
                if not agent.get("enabled", True) or not state.jobs:
                    return self._reply(204)
                job = state.jobs.pop(0)
                agent["assignedRequest"] = {"requestId": job["id"]}
                return self._reply(200, job)
            if parts == ["job-done"]:
                agent.pop("assignedRequest", None)
                return self._reply(200, agent)
        return self._reply(404, {"message": "no such stand-in route"})

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PATCH(self):
        self._route("PATCH")

    def do_PUT(self):
        self._route("PUT")

    def do_DELETE(self):
        self._route("DELETE")


class AzdoStandin(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: StandinState | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state or StandinState()
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    @property
    def org_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/{self.state.org}"

    def start(self) -> "AzdoStandin":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
