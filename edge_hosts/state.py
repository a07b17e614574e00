"""The kit's local state per site (~/.config/mlops-edge-kit/sites/<site>/): the cluster token, mode 0600."""
import os
from pathlib import Path

from common.files import atomic_write


def site_dir(site: str) -> Path:
    """Directory holding a site's local state (honours XDG_CONFIG_HOME)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "mlops-edge-kit" / "sites" / site


def write_private(path: Path, data: str) -> None:
    """Write a file atomically with mode 0600, in a directory only its owner can enter."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, data, 0o600)


class TokenStore:
    """The site's k3s join token, created once by the first server and reused on every run."""

    def __init__(self, site: str):
        self.path = site_dir(site) / "token"

    def read(self) -> str | None:
        return self.path.read_text().strip() if self.path.is_file() else None

    def write(self, token: str) -> None:
        write_private(self.path, token.strip() + "\n")

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)
