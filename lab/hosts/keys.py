"""Ed25519 key pairs in OpenSSH format, written with mode 0600."""
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def write_private(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 from the start (never readable by others, even briefly)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def new_keypair(private_path: Path, comment: str) -> str:
    """Write a new private key to `private_path` (and `.pub`); return the public key line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    write_private(private_path, private)
    line = f"{public} {comment}"
    private_path.with_name(private_path.name + ".pub").write_text(line + "\n")
    return line
