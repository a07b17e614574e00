"""Cluster CA, serving and client certificates, made with the openssl CLI (keys stay in files).

docs.k3s.io/cli/certificate: leaf certificates are valid 365 days, renewed at start-up (same key, longer life) when
they expire within 120 days; `k3s certificate rotate` backs the tls directory up to tls-<unix time> and removes the
leaf certificates and keys, which the next start makes anew; CA certificates are valid 10 years. The lab build's
timings may set `cert_days` for short-lived leaf certificates.

Agents (and servers, which run one): every start fetches agent/client-kubelet, serving-kubelet, client-kube-proxy and
client-k3s-controller (.crt: the leaf, then the CA; .key; both 0600) from a server, which signs them anew each time
with server-wide keys in server/tls (k3s pkg/agent/config getNodeNamedHostFile / getHostFile; the keys are
ControlRuntime's ClientKubeletKey, ServingKubeletKey, ClientKubeProxyKey, ClientK3sControllerKey), so an agent's
certificates renew at every start. On an agent (no server/ directory) `k3s certificate rotate` rotates the agent
services (kubelet, kube-proxy, k3s-controller) into agent/tls-<unix time> (k3s pkg/cli/cert rotate, pkg/util/services).
Fidelity note: the lab signs every leaf with server-ca (k3s signs client certificates with client-ca)."""
import datetime
import hashlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from k3sstub.settings import DATA_DIR, SERVER_DIR, TIMINGS, TLS_DIR, Fatal, log

CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
LEAF_DAYS = TIMINGS.get("cert_days", 365)
RENEW_WITHIN = datetime.timedelta(days=120)
AGENT_DIR = DATA_DIR / "agent"
# the services `k3s certificate rotate --service` accepts (k3s pkg/util/services All) and the lab's files of each,
# relative to the data dir (the lab's subset of FilesForServices)
SERVICES = {"admin": ["server/tls/client-admin.crt", "server/tls/client-admin.key"],
            "api-server": ["server/tls/serving-kube-apiserver.crt", "server/tls/serving-kube-apiserver.key"],
            "kubelet": ["server/tls/client-kubelet.key", "server/tls/serving-kubelet.key", "agent/client-kubelet.crt",
                        "agent/client-kubelet.key", "agent/serving-kubelet.crt", "agent/serving-kubelet.key"],
            "kube-proxy": ["server/tls/client-kube-proxy.key", "agent/client-kube-proxy.crt",
                           "agent/client-kube-proxy.key"],
            "k3s-controller": ["server/tls/client-k3s-controller.key", "agent/client-k3s-controller.crt",
                               "agent/client-k3s-controller.key"],
            **dict.fromkeys(["controller-manager", "scheduler", "k3s-server", "cloud-controller", "etcd",
                             "auth-proxy", "supervisor"], [])}
AGENT_SERVICES = ("kube-proxy", "kubelet", "k3s-controller")
_SIGNING = threading.Lock()   # one server-wide key per agent file, made once even when nodes join at once


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
    _sign(tls, key, cert, subject, usage, sans)


def _sign(tls: Path, key: Path, cert: Path, subject: str, usage: str, sans: list[str]) -> None:
    """`cert` for `key` (made when missing), signed by the cluster CA in `tls`."""
    exts = ["-addext", "basicConstraints=critical,CA:FALSE", "-addext", f"extendedKeyUsage={usage}"]
    if sans:
        exts += ["-addext", "subjectAltName=" + ",".join(sans)]
    keying = ["-key", str(key)] if key.exists() else [*CURVE, "-keyout", str(key)]
    _openssl("req", "-x509", *keying, "-out", str(cert), "-days", str(LEAF_DAYS), "-subj", subject,
             "-CA", str(tls / "server-ca.crt"), "-CAkey", str(tls / "server-ca.key"), *exts)


def agent_certs(tls: Path, name: str, address: str) -> dict[str, dict[str, str]]:
    """What a server hands a starting node: each agent file's certificate (leaf, then the CA) and key, signed now."""
    specs = {"client-kubelet": (f"/O=system:nodes/CN=system:node:{name}", "clientAuth", []),
             "serving-kubelet": (f"/CN={name}", "serverAuth", [f"IP:{address}", f"DNS:{name}", "DNS:localhost"]),
             "client-kube-proxy": ("/CN=system:kube-proxy", "clientAuth", []),
             "client-k3s-controller": ("/CN=system:k3s-controller", "clientAuth", [])}
    ca = (tls / "server-ca.crt").read_text()
    found = {}
    with _SIGNING:
        for file, (subject, usage, sans) in specs.items():
            key, cert = tls / f"{file}.key", tls / f"lab-issued-{file}.crt"
            _sign(tls, key, cert, subject, usage, sans)
            found[file] = {"cert": cert.read_text() + ca, "key": key.read_text()}
            cert.unlink()
    return found


def write_agent_certs(certs: dict[str, dict[str, str]]) -> None:
    """The agent files, 0600 (as k3s writes them)."""
    AGENT_DIR.mkdir(parents=True, exist_ok=True)
    for file, pair in certs.items():
        for suffix, text in ((".crt", pair["cert"]), (".key", pair["key"])):
            path = AGENT_DIR / f"{file}{suffix}"
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)


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
    """`k3s certificate rotate [--service a,b]`: back up the tls directory (an agent's files into agent/tls-<time>,
    a server's with them into server/tls-<time>), remove the services' certificates and keys."""
    wanted = next((a.split("=", 1)[1] for a in args if a.startswith("--service=")), None)
    if "--service" in args:
        wanted = args[args.index("--service") + 1]
    server = SERVER_DIR.exists()   # how k3s tells a server from an agent (the server data dir)
    services = wanted.split(",") if wanted else list(SERVICES) if server else list(AGENT_SERVICES)
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        raise Fatal(f"service {unknown[0]} is not recognized")
    if not wanted:
        log("Server detected, rotating agent and server certificates" if server else
            "Agent detected, rotating agent certificates")
    files = [DATA_DIR / name for service in services for name in SERVICES[service]]
    backup = (SERVER_DIR if server else AGENT_DIR) / f"tls-{int(time.time())}"
    if server:
        shutil.copytree(TLS_DIR, backup)
    backup.mkdir(parents=True, exist_ok=True)
    for path in files:
        if path.parent == AGENT_DIR and path.exists():
            shutil.copy2(path, backup / path.name)
    for service in services:
        log(f"Rotating certificates for {service}")
        for name in SERVICES[service]:
            (DATA_DIR / name).unlink(missing_ok=True)
    log(f"Successfully backed up certificates to {backup}, please restart k3s server or agent to rotate certificates")
    return 0


def serving_sans(addresses: list[str], names: list[str]) -> list[str]:
    ips = {"127.0.0.1", *addresses}
    dns = {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", *names}
    return [f"IP:{ip}" for ip in sorted(ips)] + [f"DNS:{d}" for d in sorted(dns)]


def ca_hash(tls: Path) -> str:
    """sha256 of the CA certificate, as in the K10<hash>::server:<password> token format."""
    return hashlib.sha256((tls / "server-ca.crt").read_bytes()).hexdigest()
