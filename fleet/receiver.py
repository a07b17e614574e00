"""The webhook the sites' notification-controller posts to (Provider type generic-hmac): each Kustomization
event becomes the site's latest status in a status store, stamped with the receiver's own receive time.

generic-hmac signs the JSON body with the Provider secret's `token`: header `X-Signature: sha256=<hex HMAC>`
(notification-controller v1.9.3 internal/notifier/forwarder.go). Each site posts to /sites/<env>/<site> with its
own key (fleet/receiving/auth.py); anything else is refused. The receiver serves HTTPS (the certificate and key
files given); plain HTTP only on a loopback address (tests, a lab).
"""
from __future__ import annotations

import ipaddress
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fleet.receiving.auth import Refusal, Replays, authenticate
from fleet.status import from_event

MAX_BODY = 64 << 10


class InsecureListen(ValueError):
    """Plain HTTP asked for on an address other than loopback."""


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2 or later with the receiver's certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def server(address: tuple[str, int], store, master: bytes, generations: dict[str, int],
           tls: ssl.SSLContext | None = None, clock=time.time) -> ThreadingHTTPServer:
    """A server recording each site's signed events into store (serve_forever to run it); generations: the
    key generation of each env it receives for."""
    if tls is None and not _loopback(address[0]):
        raise InsecureListen(f"plain HTTP on {address[0]}: give the TLS certificate and key (HTTP is for loopback)")
    replays = Replays()

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
            try:
                env, _, event = authenticate(self.path, self.headers.get("X-Signature", ""), body, master,
                                             generations, replays)
            except Refusal as refusal:
                return self._answer(refusal.code)
            status = from_event(event, received_at=clock())
            if status is not None:
                store.record(env, status)
            self._answer(202)

    return (ThreadingHTTPServer if tls is None else _tls_server(tls))(address, Handler)


def _tls_server(tls: ssl.SSLContext) -> type[ThreadingHTTPServer]:
    """A server doing each connection's TLS handshake in that connection's thread (a slow client never
    holds up the others)."""
    class TLSServer(ThreadingHTTPServer):
        def finish_request(self, request, client_address):
            try:
                request = tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # a failed handshake: nothing to answer
            try:
                super().finish_request(request, client_address)
            finally:
                request.close()
    return TLSServer
