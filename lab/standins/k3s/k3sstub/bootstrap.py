"""Bootstrap data: the CA and credential files a server keeps in the datastore, encrypted with the server token's
password (AES-256-GCM, key by PBKDF2-HMAC-SHA1, as docs.k3s.io/cli/certificate describes), each with its file's
modification time, and reconciled with the files on disk at every start.

k3s pkg/cluster/bootstrap.go ReconcileBootstrapData: a file whose content differs from the datastore's and whose
modification time is 3 s or more newer than the datastore's stops the server with "<files> newer than datastore and
could cause a cluster outage. Remove the file(s) from disk and restart to be recreated from datastore." (only the
server running --cluster-reset replaces them); a missing file, or one not newer, is written from the datastore with
the datastore's time (pkg/bootstrap WriteToDiskFromStorage: os.Chtimes); with the cred, tls or tls/etcd directory
missing or empty every file is written. Joining servers reconcile with the first server's files (/server-bootstrap,
each file's content and modification time). The lab keeps three of k3s's files: the server CA and the ipsec key."""
import base64
import json
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from k3sstub import pki
from k3sstub.settings import SERVER_DIR, TLS_DIR, Fatal, log

FILES = ("tls/server-ca.crt", "tls/server-ca.key", "cred/ipsec.psk")   # below ${data-dir}/server
SKEW_S = 3   # bootstrap.go systemTimeSkew
# k3s pkg/cluster/bootstrap.go: what a server says when the datastore's bootstrap data does not decrypt
WRONG_TOKEN = "bootstrap data already found and encrypted with different token"
NEWER = ("newer than datastore and could cause a cluster outage. Remove the file(s) from disk and restart to be "
         "recreated from datastore.")


class WrongToken(Exception):
    pass


def _key(password: str, salt: bytes) -> bytes:
    return PBKDF2HMAC(hashes.SHA1(), 32, salt, 4096).derive(password.encode())


def encrypt(files: dict[str, dict], password: str) -> dict:
    salt, nonce = os.urandom(8), os.urandom(12)
    data = AESGCM(_key(password, salt)).encrypt(nonce, json.dumps(files).encode(), None)
    return {k: base64.b64encode(v).decode() for k, v in (("salt", salt), ("nonce", nonce), ("data", data))}


def decrypt(blob: dict, password: str) -> dict[str, dict]:
    salt, nonce, data = (base64.b64decode(blob[k]) for k in ("salt", "nonce", "data"))
    try:
        return json.loads(AESGCM(_key(password, salt)).decrypt(nonce, data, None))
    except InvalidTag:
        raise WrongToken(WRONG_TOKEN) from None


def read_disk() -> dict[str, dict]:
    """The bootstrap files on disk, each {content, timestamp} (pkg/bootstrap ReadFromDisk; missing ones left out)."""
    found = {}
    for name in FILES:
        path = SERVER_DIR / name
        if path.is_file():
            found[name] = {"content": path.read_text(), "timestamp": int(path.stat().st_mtime)}
    return found


def _write_all(files: dict[str, dict]) -> None:
    log("Updating bootstrap data on disk from datastore", "warning")
    for name, item in files.items():
        path = SERVER_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(item["content"])
        os.utime(path, (item["timestamp"], item["timestamp"]))


def _dirs_exist() -> bool:
    """certDirsExist: cred, tls and tls/etcd there and not empty (the lab has no tls/etcd)."""
    return all((SERVER_DIR / d).is_dir() and any((SERVER_DIR / d).iterdir()) for d in ("cred", "tls"))


def reconcile_files(files: dict[str, dict], cluster_reset: bool = False) -> None:
    """The datastore's files against the disk's: refused when a differing file on disk is newer (by SKEW_S),
    else the datastore's written where one differs or is missing."""
    log("Reconciling bootstrap data between datastore and disk")
    if not _dirs_exist():
        return _write_all(files)
    newer, update = [], False
    for name, item in files.items():
        path = SERVER_DIR / name
        if not path.is_file():
            log(f"{path} doesn't exist. continuing...", "warning")
            update = True
        elif path.read_text() != item["content"]:
            if int(path.stat().st_mtime) - item["timestamp"] >= SKEW_S and not cluster_reset:
                newer.append(str(path))
            else:
                update = True
    if newer:
        raise Fatal(f"{', '.join(sorted(newer))} {NEWER}")
    if update:
        _write_all(files)


def _create() -> None:
    pki.ensure_ca(TLS_DIR)
    psk = SERVER_DIR / "cred" / "ipsec.psk"
    if not psk.exists():
        psk.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(psk, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(24) + "\n")


def reconcile(cluster, password: str) -> None:
    """A datastore with bootstrap data is reconciled with the disk; a new one stores the files made here."""
    if cluster.bootstrap is not None:
        reconcile_files(decrypt(cluster.bootstrap, password))
        return
    _create()
    cluster.bootstrap = encrypt(read_disk(), password)
    cluster.save()
