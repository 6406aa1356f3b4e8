"""Request and response bodies for auth, users and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from promptlooper.types import RequestBody, pattern_words

Username = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$"),
    pattern_words("must start with a letter or digit, then letters, digits, _ . @ or - only"),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024)]


class StrictModel(RequestBody):
    """Request bodies refuse unknown fields, so a typo is an error and not a silent no-op."""


class LoginRequest(StrictModel):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"


class UserCreate(StrictModel):
    username: Username
    password: Password
    is_admin: bool = False


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    is_admin: bool
    is_active: bool
    created_at: datetime


class Me(BaseModel):
    id: uuid.UUID
    username: str
    is_admin: bool
    auth_method: str


class ApiKeyCreate(StrictModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]


class ApiKeyCreated(BaseModel):
    """The only response that ever carries the key itself."""

    id: uuid.UUID
    name: str
    prefix: str
    key: str


class ApiKeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


class UserList(BaseModel):
    data: list[UserPublic]
    count: int = Field(description="Number of items in data")


class ApiKeyList(BaseModel):
    data: list[ApiKeyPublic]
    count: int
