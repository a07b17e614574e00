"""Bootstrap data: the cluster CA kept in the datastore, encrypted with the server token's password (AES-256-GCM,
key by PBKDF2-HMAC-SHA1, as docs.k3s.io/cli/certificate describes), and written back to disk at start-up."""
import base64
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from k3sstub import pki
from k3sstub.settings import TLS_DIR, log

FILES = ("server-ca.crt", "server-ca.key")
# k3s pkg/cluster/bootstrap.go: what a server says when the datastore's bootstrap data does not decrypt
WRONG_TOKEN = "bootstrap data already found and encrypted with different token"


class WrongToken(Exception):
    pass


def _key(password: str, salt: bytes) -> bytes:
    return PBKDF2HMAC(hashes.SHA1(), 32, salt, 4096).derive(password.encode())


def encrypt(files: dict[str, str], password: str) -> dict:
    salt, nonce = os.urandom(8), os.urandom(12)
    data = AESGCM(_key(password, salt)).encrypt(nonce, json.dumps(files).encode(), None)
    return {k: base64.b64encode(v).decode() for k, v in (("salt", salt), ("nonce", nonce), ("data", data))}


def decrypt(blob: dict, password: str) -> dict[str, str]:
    salt, nonce, data = (base64.b64decode(blob[k]) for k in ("salt", "nonce", "data"))
    try:
        return json.loads(AESGCM(_key(password, salt)).decrypt(nonce, data, None))
    except InvalidTag:
        raise WrongToken(WRONG_TOKEN) from None


def write_ca(files: dict[str, str]) -> None:
    """The datastore's CA files on disk (0600), rewritten only where they differ."""
    TLS_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, text in files.items():
        path = TLS_DIR / name
        if not path.exists() or path.read_text() != text:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)


def reconcile(cluster, password: str) -> None:
    """A datastore with bootstrap data puts its CA on disk; a new one stores the CA it creates."""
    if cluster.bootstrap is not None:
        log("Reconciling bootstrap data between datastore and disk")
        write_ca(decrypt(cluster.bootstrap, password))
        return
    pki.ensure_ca(TLS_DIR)
    cluster.bootstrap = encrypt({name: (TLS_DIR / name).read_text() for name in FILES}, password)
    cluster.save()
