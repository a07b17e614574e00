"""The certificates a lab cluster's kube-apiserver runs with, made as k3s makes them (k3s
pkg/daemons/control/deps/deps.go, genClientCerts/genServerCerts/genServiceAccount): a server CA `k3s-server-ca@<unix
time>` signing `serving-kube-apiserver` (CN kube-apiserver, serverAuth, the kubernetes.default.svc names plus the
site's SANs), a client CA `k3s-client-ca@<unix time>` signing `client-admin` (CN system:admin, O system:masters,
clientAuth), and a service-account key `service.key`; ECDSA P-256 keys as k3s's certutil makes them, leaf files
holding the chain. Private keys are 0600."""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.files import atomic_write

SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
DEFAULT_SANS = ("127.0.0.1", "::1", "localhost", "10.43.0.1")  # k3s adds loopback and the first service-cidr address
VALID = datetime.timedelta(days=365)  # k3s's leaf lifetime; its CAs get ten years
CA_VALID = datetime.timedelta(days=3650)


FILES = {"server_ca": "server-ca.crt", "client_ca": "client-ca.crt", "serving_cert": "serving-kube-apiserver.crt",
         "serving_key": "serving-kube-apiserver.key", "admin_cert": "client-admin.crt", "admin_key": "client-admin.key",
         "service_key": "service.key"}  # k3s's names under server/tls


@dataclass(frozen=True)
class Pki:
    """Paths of one cluster's certificate files."""

    server_ca: Path
    client_ca: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_key: Path

    @classmethod
    def at(cls, tls: Path) -> "Pki":
        """The files of the cluster whose tls directory is `tls`."""
        return cls(**{field: tls / name for field, name in FILES.items()})


def make_pki(tls: Path, sans: tuple[str, ...] = ()) -> Pki:
    """Write a new cluster's CAs, serving and admin certificates and service-account key into `tls`."""
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = Pki.at(tls)
    now = datetime.datetime.now(datetime.timezone.utc)
    server_ca = _ca(tls, "server", now)
    client_ca = _ca(tls, "client", now)
    names = list(SERVICE_NAMES) + [s for s in (*DEFAULT_SANS, *sans) if s not in SERVICE_NAMES]
    _leaf(pki.serving_cert, pki.serving_key, server_ca, _subject("kube-apiserver"),
          ExtendedKeyUsageOID.SERVER_AUTH, now, list(dict.fromkeys(names)))
    _leaf(pki.admin_cert, pki.admin_key, client_ca, _subject("system:admin", "system:masters"),
          ExtendedKeyUsageOID.CLIENT_AUTH, now, [])
    _write_key(pki.service_key, ec.generate_private_key(ec.SECP256R1()))
    return pki


def make_serving_pair(folder: Path, common_name: str, names: tuple[str, ...]) -> Path:
    """A CA of its own signing one serving certificate for `names`: tls.crt (the chain) and tls.key (0600), the
    files a controller-runtime webhook server reads from its --cert-dir; returns the CA's certificate file."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = _ca(folder, "serving", now)
    _leaf(folder / "tls.crt", folder / "tls.key", ca, _subject(common_name), ExtendedKeyUsageOID.SERVER_AUTH, now,
          list(names))
    return folder / "serving-ca.crt"


def _subject(common_name: str, organization: str = "") -> x509.Name:
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
    return x509.Name([*parts, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(tls: Path, kind: str, now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _subject(f"k3s-{kind}-ca@{int(now.timestamp())}")
    cert = (_builder(name, name, key.public_key(), now, CA_VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=True,
                                         content_commitment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    (tls / f"{kind}-ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(tls / f"{kind}-ca.key", key)
    return cert, key


def _leaf(cert_path: Path, key_path: Path, ca: tuple, subject: x509.Name, usage, now: datetime.datetime,
          names: list[str]) -> None:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (_builder(subject, ca_cert.subject, key.public_key(), now, VALID)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                            content_commitment=False, data_encipherment=False, key_agreement=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(chain)
    _write_key(key_path, key)


def _builder(subject, issuer, public_key, now, valid) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + valid)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_key(path: Path, key) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    atomic_write(path, pem.decode(), 0o600)
