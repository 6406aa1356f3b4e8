"""Request and response bodies for projects."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from promptlooper.types import RequestBody

ProjectName = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Description = Annotated[str, StringConstraints(max_length=5000)]


class ProjectCreate(RequestBody):
    name: ProjectName
    description: Description = ""


class ProjectUpdate(RequestBody):
    """Every field optional; only the fields sent are changed (PATCH semantics)."""

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
