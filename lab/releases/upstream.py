"""Upstream artifacts the lab reads from the shared copy (../shared/upstream, or $MLOPS_SHARED_UPSTREAM): the real
MetalLB release manifest and the k3s config key lists. Read at lab build time, never copied into the repo."""
import json
import os
import re
from pathlib import Path

ENV = "MLOPS_SHARED_UPSTREAM"


def root() -> Path:
    return Path(os.environ.get(ENV) or Path(__file__).resolve().parents[2].parent / "shared" / "upstream")


def metallb_manifest(version: str) -> Path:
    """metallb-<version without v>/metallb-native.yaml (metallb/metallb config/manifests at that tag)."""
    path = root() / f"metallb-{version.lstrip('v')}" / "metallb-native.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no upstream MetalLB manifest for {version} (set {ENV})")
    return path


def k3s_flags(version: str) -> dict:
    """{"server": [...], "agent": [...], "source": folder}: config.yaml keys per command, from
    k3s-<minor>/flags.json, or the newest minor there is when the pinned minor has no list (said in "source")."""
    minor = re.match(r"v?(\d+\.\d+)", version).group(1)
    folders = sorted(root().glob("k3s-*/flags.json"), key=lambda p: [int(n) for n in p.parent.name[4:].split(".")])
    wanted = root() / f"k3s-{minor}" / "flags.json"
    path = wanted if wanted.exists() else (folders[-1] if folders else wanted)
    data = json.loads(path.read_text())
    note = "" if path == wanted else f" (no list for k3s {minor}; keys of the newest list there is)"
    return {"server": sorted(data["server"]), "agent": sorted(data["agent"]),
            "source": f"{path.parent.name}/flags.json{note}"}
