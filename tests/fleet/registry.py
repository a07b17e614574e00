"""A real OCI registry for the fleet tests: Debian's docker-registry (CNCF distribution 2.8) on loopback, with
its token authentication (auth.token) backed by a small token server here that grants per-repository scopes.

Distribution verifies the bearer token itself (docs/configuration.md "token"; registry/auth/token/token.go): a
JWT whose x5c certificate chains to `rootcertbundle`, whose `iss` and `aud` match `issuer` and `service`, and
whose `access` claims cover the actions the request needs. Access control is therefore the registry's own."""
from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

BINARY = "/usr/bin/docker-registry"
SERVICE, ISSUER = "fleet-test-registry", "fleet-test-tokens"


def ensure_binary() -> None:
    """Install Debian's docker-registry when it is missing (the suite runs as root)."""
    if not Path(BINARY).exists():
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "docker-registry"], check=True, env=env,
                       stdout=subprocess.DEVNULL)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Grant:
    password: str
    rules: list[tuple[str, tuple[str, ...]]]  # (repository glob, actions)


@dataclass
class TokenServer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    users: dict[str, Grant] = field(default_factory=dict)
    issued: list[tuple[str, str]] = field(default_factory=list)  # (user, scope granted)

    def token(self, user: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = {a for glob, acts in self.users[user].rules if fnmatch(name, glob) for a in acts}
            granted = [a for a in actions.split(",") if a in allowed]
            access.append({"type": kind, "name": name, "actions": granted})
            self.issued.append((user, f"{name}:{','.join(granted)}"))
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def authenticate(self, header: str) -> str | None:
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        grant = self.users.get(user)
        return user if grant and secrets.compare_digest(grant.password, password) else None


def _handler(server: TokenServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            query = parse_qs(urlsplit(self.path).query)
            user = self.server_user = server.authenticate(self.headers.get("Authorization", ""))
            if user is None or query.get("service") != [SERVICE]:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"token": server.token(user, query.get("scope", [])), "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    return Handler


def _certificate(key) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


class RealRegistry:
    """docker-registry serving `work/storage` on 127.0.0.1, token auth by a TokenServer on another port."""

    def __init__(self, work: Path):
        ensure_binary()
        self.work = work
        key = ec.generate_private_key(ec.SECP256R1())
        self.tokens = TokenServer(key, _certificate(key))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self._token_http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.tokens))
        threading.Thread(target=self._token_http.serve_forever, daemon=True).start()
        self.process: subprocess.Popen | None = None

    def user(self, name: str, rules: list[tuple[str, tuple[str, ...]]]) -> tuple[str, str]:
        password = secrets.token_urlsafe(16)
        self.tokens.users[name] = Grant(password, rules)
        return name, password

    def _config(self) -> Path:
        bundle = self.work / "token-ca.pem"
        bundle.write_bytes(self.tokens.cert.public_bytes(serialization.Encoding.PEM))
        realm = f"http://127.0.0.1:{self._token_http.server_address[1]}/token"
        config = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
                  "storage": {"filesystem": {"rootdirectory": str(self.work / "storage")},
                              "delete": {"enabled": True}},
                  "http": {"addr": self.host, "secret": secrets.token_hex(16)},
                  "auth": {"token": {"realm": realm, "service": SERVICE, "issuer": ISSUER,
                                     "rootcertbundle": str(bundle)}}}
        path = self.work / "config.json"  # distribution reads YAML, of which JSON is a subset
        path.write_text(json.dumps(config))
        return path

    def start(self) -> "RealRegistry":
        self.work.mkdir(parents=True, exist_ok=True)
        log = open(self.work / "registry.log", "ab")
        self.process = subprocess.Popen([BINARY, "serve", str(self._config())], stdout=log, stderr=log)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=1)
            except urllib.error.HTTPError as err:
                if err.code == 401:
                    return self
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.work / 'registry.log').read_text()}")
            time.sleep(0.05)
        raise RuntimeError("docker-registry did not answer on /v2/")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        self._token_http.shutdown()
        shutil.rmtree(self.work / "storage", ignore_errors=True)
