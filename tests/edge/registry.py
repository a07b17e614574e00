"""A stand-in OCI registry on 127.0.0.1 serving lab.releases.images repositories as quay.io does: manifests need an
anonymous bearer token (401 + WWW-Authenticate, then a token service), blobs redirect to a separate "CDN" path."""
import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from lab.releases.images import Repository, digest


class StandinRegistry:
    def __init__(self, repositories: list[Repository]):
        self.repositories = {r.repository: r for r in repositories}
        self.tampered: dict[str, bytes] = {}  # digest -> bytes served instead
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self.url = ""

    def token_for(self, repository: str) -> str:
        return f"anon-{repository.replace('/', '-')}"

    def blob(self, blob_digest: str) -> bytes | None:
        for repo in self.repositories.values():
            data = repo.blobs.get(blob_digest) or repo.manifests.get(blob_digest)
            if data is not None:
                return self.tampered.get(blob_digest, data)
        return None


def _handler(registry: StandinRegistry):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code: int, body: bytes = b"", content_type: str = "application/json", **headers):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's naming
            registry.requests.append((self.path, self.headers.get("Authorization")))
            if self.path.startswith("/token?"):
                scope = parse_qs(urlsplit(self.path).query).get("scope", [""])[0]
                repository = scope.removeprefix("repository:").removesuffix(":pull")
                return self._send(200, json.dumps({"token": registry.token_for(repository)}).encode())
            if self.path.startswith("/cdn/"):
                data = registry.blob(self.path[len("/cdn/"):])
                return self._send(200, data, "application/octet-stream") if data else self._send(404)
            match = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", self.path)
            repo = registry.repositories.get(match.group(1)) if match else None
            if repo is None:
                return self._send(404)
            if self.headers.get("Authorization") != f"Bearer {registry.token_for(repo.repository)}":
                challenge = (f'Bearer realm="{registry.url}/token",service="standin",'
                             f'scope="repository:{repo.repository}:pull"')
                return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', WWW_Authenticate=challenge)
            kind, reference = match.group(2), match.group(3)
            if kind == "blobs":
                return self._send(307, Location=f"{registry.url}/cdn/{reference}")
            body = repo.index if reference == repo.tag else repo.manifests.get(reference)
            if body is None:
                return self._send(404)
            body = registry.tampered.get(digest(body), body)
            return self._send(200, body, json.loads(body)["mediaType"], Docker_Content_Digest=digest(body))
    return Handler


@contextmanager
def serve_registry(repositories: list[Repository]):
    """Yields the running StandinRegistry (its .url is http://127.0.0.1:port)."""
    registry = StandinRegistry(repositories)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(registry))
    registry.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
