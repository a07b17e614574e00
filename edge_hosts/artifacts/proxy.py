"""The site's HTTP(S) proxy: for k3s and containerd the unit's env file, for the hosts' own downloads the script's env.

k3s (docs.k3s.io/advanced "Configuring an HTTP proxy", k3s-io/docs docs/advanced.md) takes HTTP_PROXY, HTTPS_PROXY
and NO_PROXY from the unit's env file `/etc/systemd/system/<unit>.service.env` and passes them to containerd and the
kubelet; the install script writes that file (0600) from the caller's environment (install.sh create_env_file:
`sh -c export` lines matching `^(K3S|CONTAINERD)_`, then `^(NO|HTTP|HTTPS)_PROXY` in any case, as `NAME='value'`).
sudo drops the caller's environment, so the kit exports the variables inside the script it sends on stdin (never
in argv: a proxy URL may carry a password) and renders the env file the same way to tell when it changed.
NO_PROXY always holds localhost, 127.0.0.1, the cluster and service CIDRs (k3s defaults 10.42.0.0/16 and
10.43.0.0/16: docs.k3s.io/cli/server), the node subnet and the API endpoint, then the inventory's own entries.
"""
from __future__ import annotations

import shlex
from urllib.parse import urlsplit

from common import k3s
from edge_hosts.inventory.model import Inventory
from edge_hosts.access.ssh import HostSession

K3S_DEFAULT_CIDRS = {"cluster-cidr": "10.42.0.0/16", "service-cidr": "10.43.0.0/16"}


def no_proxy(inventory: Inventory) -> list[str]:
    """The addresses nodes reach directly: the site's own ranges first, then the inventory's noProxy."""
    server = inventory.k3s.server_config
    cidrs = [item for key, default in K3S_DEFAULT_CIDRS.items() for item in k3s.as_list(server.get(key, default))]
    entries = ["localhost", "127.0.0.1", *cidrs, str(inventory.node_subnet), inventory.api_host,
               *(inventory.proxy.no_proxy if inventory.proxy else [])]
    return list(dict.fromkeys(entries))


def variables(inventory: Inventory, lowercase: bool = False) -> dict[str, str]:
    """HTTP_PROXY, HTTPS_PROXY and NO_PROXY for the site ({} without a proxy); lowercase names for curl, which
    ignores an upper-case HTTP_PROXY."""
    settings = inventory.proxy
    if settings is None:
        return {}
    found = {"HTTP_PROXY": settings.http, "HTTPS_PROXY": settings.https, "NO_PROXY": ",".join(no_proxy(inventory))}
    return {(name.lower() if lowercase else name): value for name, value in found.items() if value}


def env_file(inventory: Inventory) -> str:
    """The unit's env file as install.sh writes it from these variables (dash's `export` order and quoting)."""
    lines = sorted(f"{name}={_single_quoted(value)}" for name, value in variables(inventory).items())
    return "".join(f"{line}\n" for line in lines)


def _single_quoted(value: str) -> str:
    """How dash's `export` prints a value: always in single quotes (mystring.c single_quote)."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def exports(session: HostSession, lowercase: bool = False) -> str:
    """Script lines exporting the site's proxy variables; a password in a proxy URL joins the session's secrets."""
    found = variables(session.inventory, lowercase)
    session.secrets.update(passwords(session.inventory))
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in found.items())


def passwords(inventory: Inventory) -> set[str]:
    """Passwords in the proxy URLs (http://user:password@proxy:3128)."""
    settings = inventory.proxy
    urls = [settings.http, settings.https] if settings else []
    return {urlsplit(url).password for url in urls if url and urlsplit(url).password}
