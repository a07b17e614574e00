"""The kit's local state per site (~/.config/mlops-edge-kit/sites/<site>/): the site's k3s token passwords (0600)
and the CA hash of the cluster they were last seen with."""
import os
import re
import secrets
from pathlib import Path

from common.files import atomic_write

# k3s's secure ("full") token: K10<sha256 of the cluster CA>::<user>:<password> (docs.k3s.io/cli/token)
FULL_TOKEN = re.compile(r"^K10(?P<ca>[0-9a-f]{64})::(?P<user>[^:]+):(?P<password>.+)$")


def site_dir(site: str) -> Path:
    """Directory holding a site's local state (honours XDG_CONFIG_HOME)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "mlops-edge-kit" / "sites" / site


def write_private(path: Path, data: str) -> None:
    """Write a file atomically with mode 0600, in a directory only its owner can enter."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, data, 0o600)


def ca_hash(token: str) -> str | None:
    """The cluster CA hash a full token pins (None for the short, password-only form)."""
    match = FULL_TOKEN.match(token.strip())
    return match["ca"] if match else None


def password(token: str) -> str:
    """The short form of a token: its password."""
    match = FULL_TOKEN.match(token.strip())
    return match["password"] if match else token.strip()


class TokenStore:
    """The site's two k3s secrets, generated once and kept across re-created clusters: the server token (it
    controls the cluster and encrypts its bootstrap data: servers only) and the agent token (agents join with it,
    it cannot join servers). Stored in short form; the full forms come from the running cluster."""

    NAMES = ("server-token", "agent-token", "cluster-ca")

    def __init__(self, site: str):
        self.dir = site_dir(site)

    def _read(self, name: str) -> str | None:
        path = self.dir / name
        return path.read_text().strip() if path.is_file() else None

    def exists(self) -> bool:
        return self._read("server-token") is not None

    def passwords(self) -> tuple[str, str]:
        """(server, agent) passwords, created on first use (a token stored by an older kit is kept)."""
        server = self._read("server-token") or password(self._read("token") or "") or secrets.token_hex(32)
        agent = self._read("agent-token") or secrets.token_hex(32)
        for name, value in (("server-token", server), ("agent-token", agent)):
            if self._read(name) != value:
                write_private(self.dir / name, value + "\n")
        (self.dir / "token").unlink(missing_ok=True)
        return server, agent

    def cluster_ca(self) -> str | None:
        """The CA hash of the cluster the site last ran (None before its first bootstrap)."""
        return self._read("cluster-ca")

    def learn_ca(self, digest: str) -> None:
        if self.cluster_ca() != digest:
            write_private(self.dir / "cluster-ca", digest + "\n")

    def forget(self) -> None:
        for name in (*self.NAMES, "token"):
            (self.dir / name).unlink(missing_ok=True)
