"""The webhook the sites' notification-controller posts to (Provider type generic-hmac): each Kustomization
event becomes the site's latest status in a StatusStore.

generic-hmac signs the JSON body with the Provider secret's `token`: header `X-Signature: sha256=<hex HMAC>`
(notification-controller v1.9.3 internal/notifier/forwarder.go). Unsigned or badly signed posts are refused.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fleet.status import StatusStore, from_event

MAX_BODY = 64 << 10


def signature_ok(body: bytes, header: str, key: bytes) -> bool:
    expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    return bool(key) and hmac.compare_digest(expected, header)


def server(address: tuple[str, int], store: StatusStore, key: bytes) -> ThreadingHTTPServer:
    """An HTTP server recording signed events into store (serve_forever to run it)."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self._answer(413)
            body = self.rfile.read(length)
            if not signature_ok(body, self.headers.get("X-Signature", ""), key):
                return self._answer(401)
            try:
                event = json.loads(body)
                status = from_event(event) if isinstance(event, dict) else None
            except ValueError:
                return self._answer(400)
            if status is not None:
                try:
                    store.record(str(event["metadata"].get("env", "")), status)
                except ValueError:
                    return self._answer(400)
            self._answer(202)
    return ThreadingHTTPServer(address, Handler)
