"""The lab's inventory file (the kit's site YAML format), written with absolute paths."""
from pathlib import Path

import yaml

# the versions the kit pins (common/pins.yaml, with their sources and end of support)
K3S_VERSION = "v1.37.2+k3s1"
METALLB_VERSION = "v0.16.1"


def site_document(site: str, hosts: list, key_file: Path, known_hosts: Path, subnet: str,
                  metallb_range: str, bundle: Path | None) -> dict:
    """The inventory mapping for a lab whose hosts are `hosts` (LabHost objects)."""
    doc = {
        "site": site,
        "ssh": {"user": "root", "keyFile": str(key_file), "useAgent": False, "port": 22,
                "knownHosts": str(known_hosts), "sudoPasswordEnv": None, "connectTimeout": 10},
        "k3s": {"version": K3S_VERSION, "serverConfig": {}, "agentConfig": {}},
        "metallb": {"version": METALLB_VERSION, "addresses": [metallb_range]},
        "nodeSubnet": subnet,
        "hosts": [{"name": h.name, "address": h.address, "role": h.role, "arch": "x86_64",
                   "labels": {}, "taints": []} for h in hosts],
    }
    if bundle is not None:
        doc["bundle"] = str(bundle)
    return doc


def write_site(path: Path, document: dict) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
