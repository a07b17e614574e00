"""Loading a site inventory (edge_hosts/sites/<site>.yaml or a path): YAML, the models, then the checks across
fields, with every problem reported at once with its key path."""
from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from edge_hosts.inventory import configkeys
from common import yamlio
from common.address_ranges import address_range, overlapping
from common.paths import is_site_path
from edge_hosts.inventory.model import Host, Inventory


SITES_DIR = Path(__file__).parents[1] / "sites"


class InventoryError(Exception):
    """A bad inventory file; the message lists every problem found, one per line."""


def resolve_site(site: str) -> Path:
    """A site name (edge_hosts/sites/<name>.yaml) or a path to an inventory file."""
    if is_site_path(site):
        return Path(site).expanduser()
    return SITES_DIR / f"{site}.yaml"


def load_inventory(site: str) -> Inventory:
    """Load and validate an inventory; raise InventoryError listing every problem with its key path."""
    path = resolve_site(site)
    if path.is_dir():
        raise InventoryError(f"{path}: is a directory; give an inventory file or a site name")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SITES_DIR.glob("*.yaml")))
        raise InventoryError(f"{path}: no such inventory file (sites: {known})")
    try:
        raw = yamlio.load(path.read_text(), str(path))
    except yaml.YAMLError as err:
        raise InventoryError(f"{path}: not valid YAML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InventoryError(f"{path}: cannot be read: {err}") from None
    if raw is None:
        raw = {}  # an empty file: every required key is reported missing, with its path
    if not isinstance(raw, dict):
        raise InventoryError(f"{path}: expected a mapping at the top level")
    problems = _field_problems(raw) + _site_problems(raw)
    if problems:
        raise InventoryError("\n".join(f"{path}: {where}: {what}" for where, what in problems))
    inventory = Inventory.model_validate(raw)
    return _resolved(inventory, path)


def _location(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _errors(model: type[BaseModel], data, prefix: tuple = ()) -> list[tuple[str, str]]:
    try:
        model.model_validate(data)
    except ValidationError as err:
        return [(_location(prefix + tuple(e["loc"])), e["msg"]) for e in err.errors()]
    return []


def _field_problems(raw: dict) -> list[tuple[str, str]]:
    return _errors(Inventory, raw)


def _parsed_hosts(raw: dict) -> list[tuple[int, Host]]:
    hosts = raw.get("hosts") if isinstance(raw.get("hosts"), list) else []
    parsed = []
    for index, item in enumerate(hosts):
        if not _errors(Host, item):
            parsed.append((index, Host.model_validate(item)))
    return parsed


def _site_problems(raw: dict) -> list[tuple[str, str]]:
    """Checks across fields, run on every part that parses so all problems show at once."""
    hosts = _parsed_hosts(raw)
    problems = _duplicates(hosts, "name") + _duplicates(hosts, "address")
    servers = sum(1 for _, h in hosts if h.role == "server")
    if hosts and servers % 2 == 0:
        problems.append(("hosts", f"{servers} servers: a site needs an odd number of servers (1, 3, 5...) for quorum"))
    problems += _subnet_problems(raw, hosts)
    if isinstance(raw.get("k3s"), dict):
        problems += configkeys.problems(raw["k3s"])
    if raw.get("bundle") is None:
        problems += _online_pin_problems(raw)
    return problems


def _duplicates(hosts: list[tuple[int, Host]], field: str) -> list[tuple[str, str]]:
    counts = Counter(getattr(h, field) for _, h in hosts)
    return [(f"hosts[{i}].{field}", f"duplicate {field} '{getattr(h, field)}'")
            for i, h in hosts if counts[getattr(h, field)] > 1]


def _subnet_problems(raw: dict, hosts: list[tuple[int, Host]]) -> list[tuple[str, str]]:
    try:
        subnet = ipaddress.IPv4Network(str(raw.get("nodeSubnet")), strict=False)
        ranges = [address_range(str(r)) for r in (raw.get("metallb") or {}).get("addresses") or []]
    except ValueError:
        return []  # already reported as a field problem
    problems = [(f"hosts[{i}].address", f"{h.address} is outside nodeSubnet {subnet}")
                for i, h in hosts if h.address not in subnet]
    for index, (first, last) in enumerate(ranges):
        where = f"metallb.addresses[{index}]"
        if first not in subnet or last not in subnet:
            problems.append((where, f"range {first}-{last} is outside nodeSubnet {subnet}"))
        problems += [(where, f"range {first}-{last} overlaps host {h.name} ({h.address})")
                     for _, h in hosts if first <= h.address <= last]
    problems += [(f"metallb.addresses[{index}]", f"range {ranges[index][0]}-{ranges[index][1]} overlaps "
                  f"metallb.addresses[{before}] ({ranges[before][0]}-{ranges[before][1]})")
                 for index, before in overlapping(ranges)]
    return problems


def _online_pin_problems(raw: dict) -> list[tuple[str, str]]:
    """Without a bundle hosts download for themselves: the unchecksummed files need pinned sha256 values."""
    problems = []
    if isinstance(raw.get("k3s"), dict) and not raw["k3s"].get("installScriptSha256"):
        problems.append(("k3s.installScriptSha256", "required when no bundle is given (hosts download install.sh)"))
    if isinstance(raw.get("metallb"), dict) and not raw["metallb"].get("manifestSha256"):
        problems.append(("metallb.manifestSha256", "required when no bundle is given (hosts download the manifest)"))
    return problems


def _resolved(inventory: Inventory, path: Path) -> Inventory:
    """Resolve relative paths against the inventory file's directory."""
    base = path.resolve().parent

    def rel(p: Path | None) -> Path | None:
        return None if p is None else (base / p.expanduser()).resolve()

    ssh = inventory.ssh.model_copy(update={"key_file": rel(inventory.ssh.key_file),
                                           "known_hosts": rel(inventory.ssh.known_hosts)})
    hosts = [h.model_copy(update={"ssh": h.ssh.model_copy(update={"key_file": rel(h.ssh.key_file)})})
             for h in inventory.hosts]
    registries = inventory.registries
    if registries and registries.credentials and registries.credentials.file:
        registries = registries.model_copy(update={"credentials": registries.credentials.model_copy(
            update={"file": rel(registries.credentials.file)})})
    backups = inventory.backups.model_copy(update={"dir": rel(inventory.backups.dir)})
    return inventory.model_copy(update={"ssh": ssh, "hosts": hosts, "bundle": rel(inventory.bundle),
                                        "backups": backups, "registries": registries, "source": path.resolve()})
