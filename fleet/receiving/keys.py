"""Per-site report keys: each site signs its notifications (Provider generic-hmac) with its own key, derived by
the kit from the environment's master key, so the receiver holds one secret and can check every site.

key = hex HMAC-SHA256(master, "fleet-notify/<generation>/<env>/<site>"). The notification-controller uses the
Provider secret's `token`, trimmed, as the HMAC key bytes (notification-controller v1.9.3
internal/notifier/factory.go genericHMACNotifierFunc: []byte(opts.Token); internal/server/event_handlers.go
strings.TrimSpace), so the hex text itself is the key. Rotation: a new generation (fleet.yaml
environments.<env>.receiver.keyGeneration) or a new master key changes every site's key at once; only the
current generation verifies.
"""
from __future__ import annotations

import hashlib
import hmac

MIN_MASTER_BYTES = 32


class MasterKeyError(ValueError):
    """A master key too short to derive site keys from."""


def site_key(master: bytes, generation: int, env: str, site: str) -> str:
    """The site's report key (64 hex characters)."""
    if len(master) < MIN_MASTER_BYTES:
        raise MasterKeyError(f"the master key must hold at least {MIN_MASTER_BYTES} bytes")
    label = f"fleet-notify/{generation}/{env}/{site}".encode()
    return hmac.new(master, label, hashlib.sha256).hexdigest()


def signature(key: str, body: bytes) -> str:
    """The X-Signature header value generic-hmac sends (forwarder.go: "sha256=" + hex HMAC of the body)."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
