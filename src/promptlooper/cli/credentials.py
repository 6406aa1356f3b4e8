"""``promptlooper credential``: provider keys stored in a project, for its sweeps only.

Like ``sweep run``, the commands work on the database directly, as ``--user`` (the built-in
admin by default) in ``--project``. The key is sealed with ``CREDENTIALS_KEY`` (or the key kept
under ``DATA_DIR``), so a server must share that setting or that folder to open it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from promptlooper.cli.common import async_command, console, load_settings, session_scope
from promptlooper.errors import Invalid, problem_message

if TYPE_CHECKING:
    from promptlooper.sweeps.credentials.schemas import CredentialSet

credential_app = typer.Typer(
    help="Store provider keys for a project's sweeps.", no_args_is_help=True
)

ProjectOption = typer.Option("default", "--project", help="The project whose sweeps use it.")
UserOption = typer.Option(None, "--user", help="Act as this user (default: the built-in admin).")


def _validated(name: str, provider: str, secret: str) -> CredentialSet:
    from pydantic import TypeAdapter, ValidationError

    from promptlooper.sweeps.credentials.schemas import CredentialSet
    from promptlooper.sweeps.spec import CredentialName

    try:
        TypeAdapter(CredentialName).validate_python(name)
    except ValidationError as exc:
        raise Invalid(f"NAME: {problem_message(exc.errors()[0])}") from exc
    try:
        return CredentialSet(provider=provider, secret=secret)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "--provider" if first["loc"][0] == "provider" else "secret"
        raise Invalid(f"{field}: {problem_message(first)}") from exc


def _read_secret(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Secret", hide_input=True)


@credential_app.command("set")
@async_command
async def set_credential(
    name: str = typer.Argument(..., help="What sweeps call it: `credential: NAME`."),
    provider: str = typer.Option(..., "--provider", help="The provider type: openai, anthropic."),
    secret_stdin: bool = typer.Option(
        False, "--secret-stdin", help="Read the secret from the first line of stdin."
    ),
    project: str = ProjectOption,
    user: str | None = UserOption,
) -> None:
    """Store a provider key for the project's sweeps, or replace it; the key is asked for
    unless --secret-stdin is given, and is never shown again."""
    body = _validated(name, provider, _read_secret(secret_stdin))
    from promptlooper.cli.sweeps import principal_for
    from promptlooper.projects import service as projects
    from promptlooper.sweeps.credentials import service
    from promptlooper.sweeps.credentials.box import SecretBox

    settings = load_settings()
    async with session_scope(settings) as session:
        principal = await principal_for(session, user)
        owned = await projects.get_or_create_project(session, principal, project)
        _, created = await service.set_credential(
            session,
            principal,
            SecretBox(settings.credentials_keys),
            owned.id,
            name,
            body.provider,
            body.secret.get_secret_value(),
        )
    verb = "stored" if created else "replaced"
    console.print(f"{verb} credential {name} ({body.provider})", highlight=False)


@credential_app.command("list")
@async_command
async def list_credentials(project: str = ProjectOption, user: str | None = UserOption) -> None:
    """The project's credentials: names, providers, who created them and when (no secrets)."""
    from promptlooper.cli.sweeps import principal_for, project_of
    from promptlooper.sweeps.credentials import service

    async with session_scope(load_settings()) as session:
        principal = await principal_for(session, user)
        owned = await project_of(session, principal, project)
        credentials = await service.list_credentials(session, principal, owned.id)
    table = Table("name", "provider", "created by", "created", "updated")
    for c in credentials:
        table.add_row(
            c.name,
            c.provider,
            c.created_by or "",
            f"{c.created_at:%Y-%m-%d %H:%M}",
            f"{c.updated_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@credential_app.command("delete")
@async_command
async def delete_credential(
    name: str = typer.Argument(...),
    project: str = ProjectOption,
    user: str | None = UserOption,
) -> None:
    """Delete a credential; sweeps that name it are refused from then on."""
    from promptlooper.cli.sweeps import principal_for, project_of
    from promptlooper.sweeps.credentials import service

    async with session_scope(load_settings()) as session:
        principal = await principal_for(session, user)
        owned = await project_of(session, principal, project)
        await service.delete_credential(session, principal, owned.id, name)
    console.print(f"deleted credential {name}", highlight=False)
