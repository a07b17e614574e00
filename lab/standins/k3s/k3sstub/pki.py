"""Cluster CA, serving and client certificates, made with the openssl CLI (keys stay in files).

docs.k3s.io/cli/certificate: leaf certificates are valid 365 days, renewed at start-up (same key, longer life) when
they expire within 120 days; `k3s certificate rotate` backs the tls directory up to tls-<unix time> and removes the
leaf certificates and keys, which the next start makes anew; CA certificates are valid 10 years. The lab build's
timings may set `cert_days` for short-lived leaf certificates."""
import datetime
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from k3sstub.settings import TIMINGS, TLS_DIR, Fatal, log

CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
LEAF_DAYS = TIMINGS.get("cert_days", 365)
RENEW_WITHIN = datetime.timedelta(days=120)
# the services `k3s certificate rotate --service` accepts (docs/cli/certificate.md) and the lab's leaf files of each
# (the lab makes only the admin client and the API server's serving certificate)
SERVICES = {"admin": ["client-admin"], "api-server": ["serving-kube-apiserver"],
            **dict.fromkeys(["controller-manager", "scheduler", "k3s-controller", "k3s-server", "cloud-controller",
                             "etcd", "auth-proxy", "kubelet", "kube-proxy"], [])}


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
    """A leaf certificate `name`.crt/.key signed by the cluster CA: kept while it is valid beyond 120 days for
    these SANs, renewed with its key otherwise, made with a new key when there is none."""
    cert, key = tls / f"{name}.crt", tls / f"{name}.key"
    if cert.exists() and key.exists() and _current(cert, sans):
        return
    exts = ["-addext", "basicConstraints=critical,CA:FALSE", "-addext", f"extendedKeyUsage={usage}"]
    if sans:
        exts += ["-addext", "subjectAltName=" + ",".join(sans)]
    keying = ["-key", str(key)] if key.exists() else [*CURVE, "-keyout", str(key)]
    _openssl("req", "-x509", *keying, "-out", str(cert), "-days", str(LEAF_DAYS), "-subj", subject,
             "-CA", str(tls / "server-ca.crt"), "-CAkey", str(tls / "server-ca.key"), *exts)


def _current(path: Path, sans: list[str]) -> bool:
    """Signed by the current CA (k3s deps.go regenerates a certificate its CA does not verify, e.g. after a
    restore brought another CA back), valid beyond the renewal window, for these SANs."""
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    ca = x509.load_pem_x509_certificate((path.parent / "server-ca.crt").read_bytes())
    try:
        ca.public_key().verify(certificate.signature, certificate.tbs_certificate_bytes,
                               ec.ECDSA(certificate.signature_hash_algorithm))
    except InvalidSignature:
        return False
    left = certificate.not_valid_after - datetime.datetime.utcnow()   # naive UTC: the hosts' cryptography is older
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {f"IP:{ip}" for ip in names.get_values_for_type(x509.IPAddress)} | \
               {f"DNS:{d}" for d in names.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        have = set()
    return left > RENEW_WITHIN and have == set(sans)


def rotate(args: list[str]) -> int:
    """`k3s certificate rotate [--service a,b]`: back up tls/, remove the services' leaf certificates and keys."""
    wanted = next((a.split("=", 1)[1] for a in args if a.startswith("--service=")), None)
    if "--service" in args:
        wanted = args[args.index("--service") + 1]
    services = wanted.split(",") if wanted else list(SERVICES)
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        raise Fatal(f"Error: {unknown[0]} is not a recognized service")
    backup = TLS_DIR.parent / f"tls-{int(time.time())}"
    shutil.copytree(TLS_DIR, backup)
    for service in services:
        log(f"Rotating certificates for {service}")
        for name in SERVICES[service]:
            for suffix in (".crt", ".key"):
                (TLS_DIR / f"{name}{suffix}").unlink(missing_ok=True)
    log(f"Successfully backed up certificates to {backup}, please restart k3s server or agent to rotate certificates")
    return 0


def serving_sans(addresses: list[str], names: list[str]) -> list[str]:
    ips = {"127.0.0.1", *addresses}
    dns = {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", *names}
    return [f"IP:{ip}" for ip in sorted(ips)] + [f"DNS:{d}" for d in sorted(dns)]


def ca_hash(tls: Path) -> str:
    """sha256 of the CA certificate, as in the K10<hash>::server:<password> token format."""
    return hashlib.sha256((tls / "server-ca.crt").read_bytes()).hexdigest()
