"""``/api/projects``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from promptlooper.auth.deps import PrincipalDep
from promptlooper.db.deps import Offset, SessionDep
from promptlooper.projects import service
from promptlooper.projects.schemas import ProjectCreate, ProjectList, ProjectPublic, ProjectUpdate

router = APIRouter(prefix="/api/projects", tags=["projects"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_project(
    body: ProjectCreate, principal: PrincipalDep, session: SessionDep
) -> ProjectPublic:
    project = await service.create_project(session, principal, body.name, body.description)
    await session.commit()
    return ProjectPublic.model_validate(project)


@router.get("")
async def list_projects(
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> ProjectList:
    """Your projects; an admin sees every project."""
    projects, total = await service.list_projects(session, principal, limit=limit, offset=offset)
    return ProjectList(data=[ProjectPublic.model_validate(p) for p in projects], count=total)


@router.get("/{project_id}")
async def get_project(
    project_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> ProjectPublic:
    return ProjectPublic.model_validate(await service.get_project(session, principal, project_id))


@router.patch("/{project_id}")
async def update_project(
    project_id: uuid.UUID, body: ProjectUpdate, principal: PrincipalDep, session: SessionDep
) -> ProjectPublic:
    changes = body.model_dump(exclude_unset=True)
    project = await service.update_project(session, principal, project_id, changes)
    await session.commit()
    return ProjectPublic.model_validate(project)


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_project(
    project_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, request: Request
) -> None:
    """Delete it and everything in it; 409 while one of its experiments runs."""
    guards = request.app.state.project_guards
    await service.delete_project(session, principal, project_id, guards)
    await session.commit()
