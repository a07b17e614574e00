"""fleet.status: every site's last report rolled up per wave (healthy, progressing, failed, offline since),
as rows, as JSON, or as one self-contained HTML page (waves by sites, coloured by state)."""
from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass

from fleet.plan import Plan
from fleet.status import STATES, SiteStatus, effective

COLOURS = {"healthy": "#2e7d32", "progressing": "#f9a825", "failed": "#c62828", "offline": "#757575"}


@dataclass(frozen=True)
class SiteRow:
    site: str
    wave: str
    state: str
    digest: str
    reported_at: float | None  # None: never reported


def rows(plan: Plan, reports: dict[str, SiteStatus], now: float) -> list[SiteRow]:
    out = []
    for wave in plan.waves:
        for site in wave.sites:
            status = reports.get(site)
            out.append(SiteRow(site, wave.name, effective(status, now, plan.offline_after_s),
                               status.digest if status else "", status.reported_at if status else None))
    return out


def summary(plan: Plan, table: list[SiteRow], now: float) -> dict:
    """{env, at, waves: [{name, sites, healthy, progressing, failed, offline}], sites: [...]}"""
    waves = []
    for wave in plan.waves:
        mine = [r for r in table if r.wave == wave.name]
        waves.append({"name": wave.name, "sites": len(mine), **{s: sum(r.state == s for r in mine) for s in STATES}})
    return {"env": plan.env, "at": _stamp(now), "waves": waves,
            "totals": {s: sum(r.state == s for r in table) for s in STATES} | {"sites": len(table)},
            "sites": [{"site": r.site, "wave": r.wave, "state": r.state, "digest": r.digest,
                       "lastReport": _stamp(r.reported_at) if r.reported_at else None} for r in table]}


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def to_json(data: dict) -> str:
    return json.dumps(data, sort_keys=True)


_STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.3em}
.legend span,.wave .count{margin-right:1em}.dot{display:inline-block;width:.8em;height:.8em;border-radius:2px;
margin-right:.3em;vertical-align:middle}.wave{margin:1em 0;padding:.6em;border:1px solid #ddd;border-radius:6px}
.wave h2{font-size:1em;margin:0 0 .4em}.cells{display:flex;flex-wrap:wrap;gap:2px}
.cell{width:12px;height:12px;border-radius:2px}.cell.hide{display:none}#detail{min-height:1.4em;margin:.5em 0;
font-family:monospace}input{padding:.3em;width:16em}"""
_SCRIPT = """const d=document.getElementById('detail');
document.querySelectorAll('.cell').forEach(c=>c.addEventListener('mouseover',()=>{d.textContent=c.title}));
document.getElementById('filter').addEventListener('input',e=>{const q=e.target.value;
document.querySelectorAll('.cell').forEach(c=>c.classList.toggle('hide',q&&!c.dataset.site.includes(q)))});"""


def to_html(data: dict) -> str:
    """One page, no external resources: a legend, totals, then per wave its counts and one cell per site."""
    legend = "".join(f'<span><i class="dot" style="background:{c}"></i>{s} '
                     f'<b data-total="{s}">{data["totals"][s]}</b></span>' for s, c in COLOURS.items())
    waves = []
    by_wave: dict[str, list[dict]] = {}
    for site in data["sites"]:
        by_wave.setdefault(site["wave"], []).append(site)
    for wave in data["waves"]:
        counts = "".join(f'<span class="count" data-state="{s}">{s}: {wave[s]}</span>' for s in STATES)
        cells = "".join(
            f'<i class="cell" data-site="{html.escape(s["site"])}" style="background:{COLOURS[s["state"]]}" '
            f'title="{html.escape(s["site"])}: {s["state"]}, {html.escape(s["digest"][:19] or "no report")}, '
            f'last report {s["lastReport"] or "never"}"></i>' for s in by_wave.get(wave["name"], []))
        waves.append(f'<section class="wave" data-wave="{html.escape(wave["name"])}"><h2>{html.escape(wave["name"])}'
                     f' ({wave["sites"]} sites)</h2><div>{counts}</div><div class="cells">{cells}</div></section>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Fleet {html.escape(data["env"])}'
            f'</title><style>{_STYLE}</style></head><body><h1>Fleet {html.escape(data["env"])}: '
            f'{data["totals"]["sites"]} sites at {data["at"]}</h1><div class="legend">{legend}</div>'
            f'<p><input id="filter" placeholder="filter sites by name"></p><div id="detail"></div>'
            f'{"".join(waves)}<script>{_SCRIPT}</script></body></html>')
