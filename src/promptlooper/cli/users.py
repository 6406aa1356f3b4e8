"""``promptlooper user`` and ``promptlooper apikey``: accounts and credentials."""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from promptlooper.auth.principal import Principal
from promptlooper.cli.common import (
    async_command,
    console,
    err_console,
    load_settings,
    session_scope,
)
from promptlooper.errors import Invalid, problem_message

if TYPE_CHECKING:
    from promptlooper.auth.schemas import UserCreate

user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
apikey_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _validated_user(name: str, password: str, is_admin: bool) -> UserCreate:
    from pydantic import TypeAdapter, ValidationError

    from promptlooper.auth.schemas import Password, UserCreate

    try:
        TypeAdapter(Password).validate_python(password)
        return UserCreate(username=name, password=password, is_admin=is_admin)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "password"
        raise Invalid(f"{field}: {problem_message(first)}") from exc


@user_app.command("create")
@async_command
async def create_user(
    name: str = typer.Argument(..., help="Username: letters, digits, '_', '.', '@', '-'."),
    admin: bool = typer.Option(False, "--admin", help="Give the user admin rights."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin."
    ),
) -> None:
    """Create a user; the password is asked for unless --password-stdin is given."""
    body = _validated_user(name, _read_password(password_stdin), admin)
    from promptlooper.auth import service

    async with session_scope(load_settings()) as session:
        user = await service.create_user(
            session, body.username, body.password, is_admin=body.is_admin
        )
    console.print(f"created user {user.username}{' (admin)' if user.is_admin else ''} {user.id}")


@user_app.command("list")
@async_command
async def list_users() -> None:
    """List users."""
    from promptlooper.auth import service

    async with session_scope(load_settings()) as session:
        users = await service.list_users(session)
    table = Table("username", "admin", "active", "id", "created")
    for user in users:
        table.add_row(
            user.username,
            "yes" if user.is_admin else "",
            "yes" if user.is_active else "no",
            str(user.id),
            f"{user.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@apikey_app.command("create")
@async_command
async def create_api_key(
    user: str = typer.Option(..., "--user", help="Owner of the key."),
    name: str = typer.Option("cli", "--name", help="A label to recognise the key by."),
) -> None:
    """Create an API key and print it (on stdout, alone, so it can be captured)."""
    from promptlooper.auth import service

    async with session_scope(load_settings()) as session:
        owner = await service.require_user(session, user)
        api_key, raw = await service.create_api_key(session, owner.id, name)
    err_console.print(f"API key {api_key.prefix}… for {owner.username}; it is shown only once:")
    print(raw)


@apikey_app.command("list")
@async_command
async def list_api_keys(user: str = typer.Option(..., "--user", help="Owner of the keys.")) -> None:
    """List a user's active API keys (prefixes only)."""
    from promptlooper.auth import service

    async with session_scope(load_settings()) as session:
        owner = await service.require_user(session, user)
        keys = await service.list_api_keys(session, owner.id)
    table = Table("id", "name", "prefix", "created", "last used")
    for key in keys:
        last = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
        table.add_row(str(key.id), key.name, key.prefix, f"{key.created_at:%Y-%m-%d %H:%M}", last)
    console.print(table)


@apikey_app.command("revoke")
@async_command
async def revoke_api_key(key_id: uuid.UUID = typer.Argument(..., help="The key's id.")) -> None:
    """Revoke an API key (by its id, as `apikey list` shows it)."""
    from promptlooper.auth import service

    async with session_scope(load_settings()) as session:
        await service.revoke_api_key(session, Principal.local_operator(), key_id)
    console.print(f"revoked {key_id}")
