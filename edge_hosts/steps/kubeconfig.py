"""The site's kubeconfig on this machine: the first server's k3s.yaml, renamed to the site, merged into a file here."""
from __future__ import annotations

from pathlib import Path

from common import k3s

from edge_hosts.inventory import k3s_config
from edge_hosts.inventory.model import Inventory
from edge_hosts.access.kubeconfig import merge_into, site_kubeconfig
from edge_hosts.engine.context import HostContext


def write_kubeconfig(first: HostContext, inventory: Inventory, path: Path, k3s_yaml: str | None = None) -> bool:
    """Merge the first server's k3s.yaml (fetched unless given), renamed to the site, into path."""
    text = k3s_yaml or first.session.check(f"cat {k3s.KUBECONFIG}\n", f"reading {k3s.KUBECONFIG}")
    return merge_into(path, site_kubeconfig(text, inventory.site, k3s_config.server_url(inventory)))
