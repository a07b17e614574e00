"""Where stack state lives and how its secrets are encrypted: resolved from options and the environment."""
import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = Path("~/.pulumi-mlops-edge-kit")
BACKEND_SCHEMES = ("file://", "azblob://", "s3://", "gs://", "https://")
KEY_VAULT_KEY = re.compile(r"^azurekeyvault://[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]\.vault\.azure\.net/keys/[a-zA-Z0-9-]{1,127}"
                           r"(/[0-9a-f]{32})?$")
PASSPHRASE = "passphrase"


class OptionsError(Exception):
    """Bad --backend / --secrets-provider values: every problem at once."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Backend:
    """The state backend URL and the secrets provider new stacks are created with."""

    url: str
    secrets_provider: str

    def env_vars(self) -> dict[str, str]:
        """Environment for every Pulumi command (never argv, so nothing secret shows in a process list)."""
        return {"PULUMI_BACKEND_URL": self.url, "PULUMI_SKIP_UPDATE_CHECK": "true"}

    def ensure_local_state(self) -> None:
        """A file backend's directory must exist; create it private to the user (0700)."""
        if self.url.startswith("file://"):
            Path(self.url.removeprefix("file://")).expanduser().mkdir(mode=0o700, parents=True, exist_ok=True)

    def uses_passphrase(self) -> bool:
        return self.secrets_provider == PASSPHRASE


def resolve_backend(backend: str = "", secrets_provider: str = "") -> Backend:
    """--backend, else PULUMI_BACKEND_URL, else a local file backend in the user's home."""
    url = backend or os.environ.get("PULUMI_BACKEND_URL", "")
    provider = secrets_provider or PASSPHRASE
    problems = []
    if url and not url.startswith(BACKEND_SCHEMES):
        problems.append(f"--backend: {url!r} is not a Pulumi backend URL; use one of {', '.join(BACKEND_SCHEMES)}")
    if provider != PASSPHRASE and not KEY_VAULT_KEY.match(provider):
        problems.append(f"--secrets-provider: {provider!r} must be 'passphrase' or "
                        "'azurekeyvault://<vault>.vault.azure.net/keys/<key>'")
    if problems:
        raise OptionsError(problems)
    return Backend(url=url or f"file://{DEFAULT_STATE_DIR.expanduser()}", secrets_provider=provider)
