"""Request and response bodies for project credentials: the secret goes in, never out."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field, SecretStr, field_validator

from promptlooper.sweeps.providers import KEYED_TYPES
from promptlooper.types import RequestBody

_PRINTABLE = re.compile(r"^[\x21-\x7e]{1,4096}$")


class CredentialSet(RequestBody):
    provider: str = Field(description=f"the provider type: {', '.join(sorted(KEYED_TYPES))}")
    secret: SecretStr

    @field_validator("provider")
    @classmethod
    def _keyed(cls, provider: str) -> str:
        if provider not in KEYED_TYPES:
            raise ValueError(f"must be one of {', '.join(sorted(KEYED_TYPES))}")
        return provider

    @field_validator("secret")
    @classmethod
    def _printable(cls, secret: SecretStr) -> SecretStr:
        """It becomes an HTTP header: visible ASCII only, no spaces or line breaks."""
        if not _PRINTABLE.fullmatch(secret.get_secret_value()):
            raise ValueError("must be 1 to 4096 printable ASCII characters, no spaces or breaks")
        return secret


class CredentialPublic(BaseModel):
    """What anyone may read of a credential: everything but the secret."""

    name: str
    provider: str
    created_by: str | None = Field(description="the username of whoever first set it")
    created_at: datetime
    updated_at: datetime


class CredentialList(BaseModel):
    data: list[CredentialPublic]
    count: int
