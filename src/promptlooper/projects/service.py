"""Project operations with owner-only access (admins see everything). The caller commits."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.auth.models import User
from promptlooper.auth.principal import Principal
from promptlooper.errors import Conflict, Invalid, NotFound
from promptlooper.projects.models import Project


async def _flush_or_conflict(session: AsyncSession, name: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"You already have a project named {name!r}") from exc


async def _name_taken(session: AsyncSession, owner_id: uuid.UUID, name: str) -> bool:
    query = select(Project.id).where(Project.owner_id == owner_id, Project.name == name)
    return await session.scalar(query) is not None


async def create_project(
    session: AsyncSession, principal: Principal, name: str, description: str = ""
) -> Project:
    if await _name_taken(session, principal.user_id, name):
        raise Conflict(f"You already have a project named {name!r}")
    project = Project(owner_id=principal.user_id, name=name, description=description)
    session.add(project)
    await _flush_or_conflict(session, name)
    return project


async def _by_name(session: AsyncSession, principal: Principal, name: str) -> Project | None:
    query = select(Project).where(Project.owner_id == principal.user_id, Project.name == name)
    return await session.scalar(query)


async def get_or_create_project(session: AsyncSession, principal: Principal, name: str) -> Project:
    """The caller's project called ``name``, created if missing (the CLI files work this way)."""
    return await _by_name(session, principal, name) or await create_project(
        session, principal, name
    )


async def find_project(session: AsyncSession, principal: Principal, name: str) -> Project:
    """The caller's project called ``name``; looking something up never creates it."""
    project = await _by_name(session, principal, name)
    if project is None:
        raise NotFound(f"No project named {name!r}")
    return project


async def find_projects(
    session: AsyncSession, *, owner_id: uuid.UUID | None = None, name: str | None = None
) -> list[tuple[Project, str]]:
    """Every project, or those of one owner and/or of one name, each with its owner's username:
    for the operator at the database (the CLI), who may see them all. Finds, never creates."""
    query = select(Project, User.username).join(User, User.id == Project.owner_id)
    if owner_id is not None:
        query = query.where(Project.owner_id == owner_id)
    if name is not None:
        query = query.where(Project.name == name)
    rows = await session.execute(query.order_by(User.username, Project.name))
    return [(project, username) for project, username in rows]


async def owned_project_ids(session: AsyncSession, principal: Principal) -> list[uuid.UUID]:
    """The ids of the caller's own projects (an admin's too: not everyone's)."""
    return list(
        await session.scalars(select(Project.id).where(Project.owner_id == principal.user_id))
    )


async def list_projects(
    session: AsyncSession, principal: Principal, *, limit: int = 100, offset: int = 0
) -> tuple[list[Project], int]:
    """The caller's projects (every project for an admin), newest first, and the total."""
    query = select(Project)
    if not principal.is_admin:
        query = query.where(Project.owner_id == principal.user_id)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    page = query.order_by(Project.created_at.desc(), Project.id).limit(limit).offset(offset)
    return list(await session.scalars(page)), total or 0


async def get_project(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID
) -> Project:
    """The project, if it exists (404) and the caller may see it (403).

    Other domains call this before touching anything inside a project.
    """
    project = await session.get(Project, project_id)
    if project is None:
        raise NotFound("Project not found")
    principal.ensure_can_access(project.owner_id, "project")
    return project


async def owned_by_admin(session: AsyncSession, project_id: uuid.UUID) -> bool:
    """Whether the project's owner is an admin: the work in a project acts with its owner's
    rights, whoever sends it."""
    query = select(User.is_admin).join(Project, Project.owner_id == User.id)
    return bool(await session.scalar(query.where(Project.id == project_id)))


async def update_project(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID, changes: dict[str, Any]
) -> Project:
    """Apply the given fields only; unchanged values are not written."""
    project = await get_project(session, principal, project_id)
    if "name" in changes:
        if changes["name"] is None:
            raise Invalid("name cannot be null")
        if changes["name"] != project.name and await _name_taken(
            session, project.owner_id, changes["name"]
        ):
            raise Conflict(f"You already have a project named {changes['name']!r}")
    if changes.get("description", "") is None:
        changes["description"] = ""
    for field, value in changes.items():
        if getattr(project, field) != value:
            setattr(project, field, value)
    await _flush_or_conflict(session, project.name)
    return project


ProjectGuard = Callable[[AsyncSession, uuid.UUID], Awaitable[None]]
"""A check another domain makes before a project and everything in it goes (it raises to
refuse); the app hands them to the routes, since this domain imports none of the others."""


async def delete_project(
    session: AsyncSession,
    principal: Principal,
    project_id: uuid.UUID,
    guards: Sequence[ProjectGuard] = (),
) -> None:
    project = await get_project(session, principal, project_id)
    for guard in guards:
        await guard(session, project_id)
    await session.delete(project)
    await session.flush()
