"""The committed end-of-support table (common/pins.yaml) and the warnings it gives for pins in use.

Pure: no Pulumi, no network; `today` is passed in so tests can choose it.
"""
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Mapping

from common import yamlio

PINS_FILE = Path(__file__).with_name("pins.yaml")


@dataclass(frozen=True)
class PinRow:
    component: str
    version: str
    end_of_support: date
    source: str
    checked: date | None = None  # the day the source was read (required in the file)

    def covers(self, version: str) -> bool:
        """An exact version, or a minor row ("1.35") covering its patches ("1.35.4")."""
        version = version.removeprefix("v")
        wanted = self.version.removeprefix("v")
        return version == wanted or version.startswith(f"{wanted}.")


def load_table(path: Path = PINS_FILE) -> list[PinRow]:
    """Every row of the table; a malformed row raises ValueError naming the file and the row."""
    document = yamlio.load(path.read_text(), path.name) or {}
    rows, problems = [], []
    for i, row in enumerate(document.get("pins") or []):
        try:
            rows.append(PinRow(str(row["component"]), str(row["version"]), row["endOfSupport"], str(row["source"]),
                               row["checked"]))
        except (KeyError, TypeError) as err:
            problems.append(f"{path.name}: pins[{i}]: needs component, version, endOfSupport, source, checked ({err})")
            continue
        problems += [f"{path.name}: pins[{i}].{key}: {problem}" for key, problem in _row_problems(rows[-1])]
    if problems:
        raise ValueError("\n".join(problems))
    return rows


def _row_problems(row: PinRow) -> list[tuple[str, str]]:
    found = [(key, "must be a date (YYYY-MM-DD)") for key, value in
             (("endOfSupport", row.end_of_support), ("checked", row.checked)) if not isinstance(value, date)]
    if not row.source.startswith("https://"):
        found.append(("source", f"'{row.source}' must be the https:// page the date was read from"))
    return found


def warnings(pins: Mapping[str, str], today: date, table: list[PinRow] | None = None) -> list[str]:
    """A warning for each pin (component -> version) past its end of support, or missing from the table."""
    table = load_table() if table is None else table
    notes = []
    for component, version in sorted(pins.items()):
        row = next((r for r in table if r.component == component and r.covers(version)), None)
        if row is None:
            notes.append(f"pin {component} {version} has no end-of-support row in common/pins.yaml")
        elif today > row.end_of_support:
            notes.append(f"pin {component} {version} is past its end of support ({row.end_of_support}, "
                         f"{row.source}): move to a supported version")
    return notes



def newest(component: str, table: list[PinRow] | None = None) -> str | None:
    """The newest version the table has a row for (e.g. the k3s minor the kit's edge runs)."""
    table = load_table() if table is None else table
    versions = [row.version for row in table if row.component == component]
    return max(versions, key=lambda v: tuple(int(p) for p in v.removeprefix("v").split(".") if p.isdigit()),
               default=None)
