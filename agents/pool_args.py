"""The arguments of agents.status and agents.cleanup, validated together (every problem at once)."""
from pydantic import BaseModel, field_validator

from agents.azdo import AzdoError, check_org_url
from agents.ops import parse_duration


class PoolArgs(BaseModel):
    org: str
    pool: str
    older_than: str = "2h"

    @field_validator("org")
    @classmethod
    def _org(cls, value: str) -> str:
        if not value:
            raise ValueError("not given: pass --org or set AZP_URL")
        try:
            return check_org_url(value)
        except AzdoError as err:
            raise ValueError(str(err)) from None

    @field_validator("pool")
    @classmethod
    def _pool(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("not given: pass --pool NAME")
        return value.strip()

    @field_validator("older_than")
    @classmethod
    def _older_than(cls, value: str) -> str:
        parse_duration(value)
        return value
