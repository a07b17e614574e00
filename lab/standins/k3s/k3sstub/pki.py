"""Cluster CA, serving and client certificates, made with the openssl CLI (keys stay in files)."""
import hashlib
import os
import subprocess
from pathlib import Path

CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str) -> None:
    old = os.umask(0o077)
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    finally:
        os.umask(old)


def ensure_ca(tls: Path) -> None:
    """Create the cluster CA once (kept across restarts, like k3s)."""
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (tls / "server-ca.crt").exists():
        return
    _openssl("req", "-x509", *CURVE, "-keyout", str(tls / "server-ca.key"),
             "-out", str(tls / "server-ca.crt"), "-days", "3650", "-subj", "/CN=k3s-server-ca")


def issue(tls: Path, name: str, subject: str, usage: str, sans: list[str] = ()) -> None:
    """A leaf certificate `name`.crt/.key signed by the cluster CA."""
    exts = ["-addext", "basicConstraints=critical,CA:FALSE", "-addext", f"extendedKeyUsage={usage}"]
    if sans:
        exts += ["-addext", "subjectAltName=" + ",".join(sans)]
    _openssl("req", "-x509", *CURVE, "-keyout", str(tls / f"{name}.key"),
             "-out", str(tls / f"{name}.crt"), "-days", "3650", "-subj", subject,
             "-CA", str(tls / "server-ca.crt"), "-CAkey", str(tls / "server-ca.key"), *exts)


def serving_sans(addresses: list[str], names: list[str]) -> list[str]:
    ips = {"127.0.0.1", *addresses}
    dns = {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", *names}
    return [f"IP:{ip}" for ip in sorted(ips)] + [f"DNS:{d}" for d in sorted(dns)]


def ca_hash(tls: Path) -> str:
    """sha256 of the CA certificate, as in the K10<hash>::server:<password> token format."""
    return hashlib.sha256((tls / "server-ca.crt").read_bytes()).hexdigest()
