"""An edge site's credential for its env's registry: from the Pulumi stack output, an env var or a 0600 file.

The source is named in the inventory (`registries.credentials`), never the credential itself. Every source yields
the site's entry of the stack output `edgeRegistryCredentials` (infra/components/edge_registry.py: `{site: {server, username,
password}}`, a secret): a JSON object `{"server", "username", "password"}`.

- `pulumiStack: org/project/env` runs `pulumi stack output edgeRegistryCredentials --show-secrets --json --stack
  org/project/env`: it needs the Pulumi CLI on PATH and a login to the env's backend (`pulumi login`, or
  PULUMI_ACCESS_TOKEN / PULUMI_BACKEND_URL and the secrets provider's settings in the environment). The secret comes
  back on a pipe; argv holds only the output's name and the stack.
- `env: NAME`: the variable holds the JSON object.
- `file: PATH`: the file holds the JSON object and must not be readable by group or others (refused like ssh refuses
  a private key: "Permissions 0644 for 'PATH' are too open").

Errors name the source and what is wrong; they never contain the password (nor the JSON that holds it).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from edge_hosts.inventory.model import REGISTRY_NAME, Inventory, RegistryCredentialSource

OUTPUT = "edgeRegistryCredentials"  # infra/platform.py exports it
PROJECT_DIR = Path(__file__).resolve().parents[1]  # Pulumi.yaml: the CLI's project when the stack is not global
PULUMI_TIMEOUT = 120


class CredentialError(Exception):
    """The site's registry credential cannot be had; the message names the source, never the secret."""


@dataclass(frozen=True)
class RegistryCredential:
    server: str
    username: str
    password: str = field(repr=False)


def site_registry_credential(inventory: Inventory, environ: dict[str, str] | None = None) -> RegistryCredential:
    """The site's credential for its env's registry, from the source `registries.credentials` names; from this
    process's environment (environ None) it is looked up once and shared (every host's step, fleet delivery)."""
    source = inventory.registries.credentials if inventory.registries else None
    if source is None:
        raise CredentialError(f"{inventory.source}: registries.credentials: not set; name the site's registry token "
                              f"source (pulumiStack, env or file)")
    if environ is None:
        return _once(source, inventory.site, inventory.source)
    return credential_from(source, inventory.site, inventory.source, environ)


@lru_cache(maxsize=8)
def _once(source: RegistryCredentialSource, site: str, inventory_file: Path) -> RegistryCredential:
    return credential_from(source, site, inventory_file)  # a pulumi call takes seconds; errors are not cached


def credential_from(source: RegistryCredentialSource, site: str, inventory_file: Path,
                    environ: dict[str, str] | None = None) -> RegistryCredential:
    """The credential from one source; errors start with the inventory file and the key path."""
    environ = os.environ if environ is None else environ
    try:
        if source.pulumi_stack:
            key = source.site or site
            return _entry(_stack_output(source.pulumi_stack, environ), key,
                          f"registries.credentials.pulumiStack: {OUTPUT}['{key}'] of stack {source.pulumi_stack}")
        if source.env:
            return _parse(_from_env(source.env, environ), f"registries.credentials.env: {source.env}")
        return _parse(_from_file(source.file), f"registries.credentials.file: {source.file}")
    except CredentialError as err:
        raise CredentialError(f"{inventory_file}: {err}") from None


def _stack_output(stack: str, environ: dict[str, str]) -> dict:
    pulumi = shutil.which("pulumi", path=environ.get("PATH"))
    if pulumi is None:
        raise CredentialError("registries.credentials.pulumiStack: the Pulumi CLI is not on PATH; this source needs "
                              "it and a login to the stack's backend (pulumi login), or use env or file")
    argv = [pulumi, "stack", "output", OUTPUT, "--show-secrets", "--json", "--non-interactive", "--stack", stack]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PULUMI_TIMEOUT, env=dict(environ),
                              cwd=PROJECT_DIR, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise CredentialError(f"registries.credentials.pulumiStack: pulumi stack output {OUTPUT} --stack {stack}: "
                              f"no answer in {PULUMI_TIMEOUT} s") from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise CredentialError(f"registries.credentials.pulumiStack: pulumi stack output {OUTPUT} --stack {stack} "
                              f"failed: {reason[0]} "
                              f"(needs a login to the stack's backend: pulumi login)")
    where = f"registries.credentials.pulumiStack: pulumi stack output {OUTPUT} --stack {stack}"
    value = _json(done.stdout, where)
    if not isinstance(value, dict):
        raise CredentialError(f"{where}: expected an object of sites, "
                              f"got {type(value).__name__} (is it shown as [secret]? --show-secrets was given)")
    return value


def _entry(outputs: dict, site: str, where: str) -> RegistryCredential:
    if site not in outputs:
        known = ", ".join(sorted(map(str, outputs))) or "none"
        raise CredentialError(f"{where}: no such site (sites there: {known}); registry.edgeSites in the env's "
                              f"stack settings gives each site its token")
    return _credential(outputs[site], where)


def _from_env(name: str, environ: dict[str, str]) -> str:
    if not environ.get(name):
        raise CredentialError(f"registries.credentials.env: environment variable {name} is not set")
    return environ[name]


def _from_file(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise CredentialError(f"registries.credentials.file: {path}: cannot be read: {err.strerror}") from None
    with os.fdopen(fd) as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if mode & 0o077:
            raise CredentialError(f"registries.credentials.file: Permissions {mode:04o} for '{path}' are too open: "
                                  f"the file must not be accessible by others (chmod 600)")
        try:
            return handle.read()
        except (OSError, UnicodeDecodeError) as err:
            raise CredentialError(f"registries.credentials.file: {path}: cannot be read: {err}") from None


def _parse(text: str, where: str) -> RegistryCredential:
    return _credential(_json(text, where), where)


def _json(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:  # its message has a position, never the text
        raise CredentialError(f"{where}: not JSON ({err.msg} at line {err.lineno} column {err.colno})") from None


def _credential(value, where: str) -> RegistryCredential:
    if not isinstance(value, dict):
        raise CredentialError(f"{where}: expected an object with server, username and password")
    missing = [key for key in ("server", "username", "password") if not isinstance(value.get(key), str)
               or not value[key]]
    if missing:
        raise CredentialError(f"{where}: {', '.join(missing)} missing or not a non-empty string")
    if not REGISTRY_NAME.match(value["server"]) or value["server"] == "*":
        raise CredentialError(f"{where}: server '{value['server']}' is not a registry host[:port]")
    return RegistryCredential(server=value["server"], username=value["username"], password=value["password"])
