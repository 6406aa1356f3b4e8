"""Request and response bodies for projects."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

ProjectName = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Description = Annotated[str, StringConstraints(max_length=5000)]


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ProjectName
    description: Description = ""


class ProjectUpdate(BaseModel):
    """Every field optional; only the fields sent are changed (PATCH semantics)."""

    model_config = ConfigDict(extra="forbid")

    name: ProjectName | None = None
    description: Description | None = None


class ProjectPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str
    created_at: datetime
    updated_at: datetime


class ProjectList(BaseModel):
    data: list[ProjectPublic]
    count: int
