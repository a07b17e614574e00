"""Site kubeconfig: k3s.yaml rewritten field by field for the site, merged atomically into a kubeconfig file."""
from __future__ import annotations

from pathlib import Path

import yaml

from common import yamlio
from common.files import write_problem
from edge_hosts.access.state import write_private

DEFAULT_PATH = Path("~/.kube/config")


class KubeconfigError(Exception):
    """The kubeconfig from the server or the local file is not usable."""


def _single(doc: dict, section: str) -> dict:
    items = doc.get(section) or []
    if len(items) != 1:
        raise KubeconfigError(f"k3s.yaml: expected one entry under {section}, found {len(items)}")
    return items[0]


def site_kubeconfig(k3s_yaml: str, site: str, server_url: str) -> dict:
    """Rename cluster, user and context to the site and point the cluster at the server address."""
    try:
        doc = yamlio.load(k3s_yaml)
    except yaml.YAMLError as err:
        raise KubeconfigError(f"k3s.yaml is not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError("k3s.yaml is not a kubeconfig")
    cluster, user, context = (_single(doc, s) for s in ("clusters", "users", "contexts"))
    cluster_body = dict(cluster["cluster"], server=server_url)
    context_body = dict(context["context"], cluster=site, user=site)
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": site, "cluster": cluster_body}],
            "users": [{"name": site, "user": user["user"]}],
            "contexts": [{"name": site, "context": context_body}],
            "current-context": site}


def _replace(entries: list, new: dict) -> list:
    return [e for e in entries if e.get("name") != new["name"]] + [new]


def merge(existing: dict | None, site_config: dict) -> dict:
    """Add or replace the site's cluster, user and context; keep every other entry and the current context."""
    merged = dict(existing or {"apiVersion": "v1", "kind": "Config", "preferences": {}})
    for section in ("clusters", "users", "contexts"):
        merged[section] = _replace(list(merged.get(section) or []), site_config[section][0])
    if not merged.get("current-context"):
        merged["current-context"] = site_config["current-context"]
    return merged


def path_problem(path: Path) -> str | None:
    """Why a site's context could not be merged into this kubeconfig file (None when it can): found before any
    host is contacted, not after the install it would end."""
    path = path.expanduser()
    problem = write_problem(path)
    if problem or not path.exists():
        return problem
    try:
        existing = yamlio.load(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        return f"{path} cannot be read: {getattr(err, 'strerror', None) or err}"
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        return f"{path} is not valid YAML ({where}{getattr(err, 'problem', None) or err}); the kit will not touch it"
    if existing is not None and not isinstance(existing, dict):
        return f"{path} is not a kubeconfig (not a mapping); the kit will not touch it"
    return None


def merge_into(path: Path, site_config: dict) -> bool:
    """Merge into a kubeconfig file atomically (mode 0600); return whether the file changed."""
    path = path.expanduser()
    existing = None
    if path.is_file():
        try:
            existing = yamlio.load(path.read_text(), str(path))
        except yaml.YAMLError as err:
            raise KubeconfigError(f"{path}: not valid YAML ({err}); not touching it") from None
        if existing is not None and not isinstance(existing, dict):
            raise KubeconfigError(f"{path}: not a kubeconfig; not touching it")
    merged = merge(existing, site_config)
    if merged == existing and (path.stat().st_mode & 0o777) == 0o600:
        return False
    write_private(path, yaml.safe_dump(merged, sort_keys=False))
    return True
