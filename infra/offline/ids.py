"""Deterministic identities the offline answers share: subscription, tenant and stable UUIDs."""
import hashlib
import uuid

SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000000"
TENANT_ID = "11111111-1111-4111-8111-111111111111"


def stable_uuid(*parts: str) -> str:
    """A deterministic UUID, so the same plan gives the same ids."""
    return str(uuid.UUID(hashlib.sha256("/".join(parts).encode()).hexdigest()[:32], version=4))
