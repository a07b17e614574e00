"""Which site a report comes from, decided by the receiver, never by the body: the URL path /sites/<env>/<site>
selects the site's key (keys.site_key), the X-Signature must verify with THAT key, and the body's own site and
env (the Alert's eventMetadata) must name the same site. A body accepted once is refused when it comes again (a
replay): the receiver keeps the digests of the latest bodies of each site."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

from fleet.receiving.keys import signature, site_key

PATH = re.compile(r"^/sites/([a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?)/([a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?)$")
REMEMBERED = 512  # bodies remembered per site (notification-controller sends a few per reconcile)


@dataclass(frozen=True)
class Refusal(Exception):
    code: int      # 404 unknown path or env, 401 bad signature, 403 body of another site, 409 replay, 400 not JSON
    reason: str


class Replays:
    """The digests of the latest REMEMBERED accepted bodies of each site (thread-safe)."""

    def __init__(self):
        self._seen: dict[tuple[str, str], OrderedDict] = {}
        self._lock = threading.Lock()

    def first_time(self, env: str, site: str, body: bytes) -> bool:
        digest = hashlib.sha256(body).digest()
        with self._lock:
            seen = self._seen.setdefault((env, site), OrderedDict())
            if digest in seen:
                return False
            seen[digest] = None
            if len(seen) > REMEMBERED:
                seen.popitem(last=False)
            return True


def authenticate(path: str, header: str, body: bytes, master: bytes, generations: dict[str, int],
                 replays: Replays) -> tuple[str, str, dict]:
    """(env, site, event) of a signed report; Refusal says why not."""
    found = PATH.match(path)
    if not found or found.group(1) not in generations:
        raise Refusal(404, "not a site's report path /sites/<env>/<site>")
    env, site = found.group(1), found.group(3)
    if not hmac.compare_digest(signature(site_key(master, generations[env], env, site), body), header):
        raise Refusal(401, "the signature does not verify with the site's key")
    try:
        event = json.loads(body)
    except ValueError:
        raise Refusal(400, "not JSON") from None
    meta = (event.get("metadata") or {}) if isinstance(event, dict) else {}
    if not isinstance(meta, dict) or meta.get("site") != site or meta.get("env") != env:
        raise Refusal(403, "the body names another site than its key")
    if not replays.first_time(env, site, body):
        raise Refusal(409, "a body already received (replay)")
    return env, site, event
