"""/etc/rancher/k3s/registries.yaml for a site: mirrors, k3s's embedded registry mirror, the env's registry auth + TLS.

Format (k3s-io/docs docs/installation/private-registry.md): `mirrors.<registry>.endpoint` (a list) and `.rewrite`,
`configs.<registry>.auth.username|password` and `.tls.ca_file|cert_file|key_file|insecure_skip_verify`; k3s reads
the file only when it starts, so a changed file needs a restart. The embedded mirror (docs/installation/
registry-mirror.md, GA since v1.29.12/v1.30.8/v1.31.4): servers run with `embedded-registry: true` (k3s.render_config)
and a registry is shared between nodes when it has a `mirrors` entry, endpoints or not; with the embedded mirror on,
the env's registry gets one, so an image one node pulled reaches the others over the site LAN.
"""
from __future__ import annotations

from dataclasses import dataclass

import yaml

from edge_hosts.inventory.credentials import RegistryCredential, site_registry_credential
from edge_hosts.inventory.model import Inventory, Mirror, Registries


@dataclass(frozen=True)
class RegistriesFile:
    text: str
    secrets: frozenset[str]  # what no output may show: the registry password


def registries_file(inventory: Inventory) -> RegistriesFile | None:
    """The site's registries.yaml (None: the inventory has no registries section and the kit leaves the file alone);
    raises CredentialError when the credential cannot be had."""
    registries = inventory.registries
    if registries is None:
        return None
    credential = site_registry_credential(inventory) if registries.credentials else None
    return RegistriesFile(render(registries, credential), frozenset({credential.password} if credential else ()))


def render(registries: Registries, credential: RegistryCredential | None) -> str:
    mirrors = {name: _mirror(mirror) for name, mirror in registries.mirrors.items()}
    configs = {}
    if credential is not None:
        if registries.embedded_mirror:
            mirrors.setdefault(credential.server, {})
        configs[credential.server] = {"auth": {"username": credential.username, "password": credential.password}}
        if registries.tls is not None:
            configs[credential.server]["tls"] = registries.tls.model_dump(exclude_none=True)
    return yaml.safe_dump({"mirrors": mirrors, "configs": configs}, sort_keys=True, default_flow_style=False)


def _mirror(mirror: Mirror) -> dict:
    entry = {}
    if mirror.endpoints:
        entry["endpoint"] = list(mirror.endpoints)
    if mirror.rewrite:
        entry["rewrite"] = dict(mirror.rewrite)
    return entry
