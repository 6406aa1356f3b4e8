"""``promptlooper db``: schema migrations."""

from __future__ import annotations

import typer

from promptlooper import migrations
from promptlooper.cli.common import async_command, console, database, load_settings

app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)


@app.command()
@async_command
async def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Upgrade the schema (to the latest revision by default)."""
    async with database(load_settings(), require_schema=False) as engine:
        await migrations.upgrade(engine, revision)
        console.print(f"schema at revision {await migrations.current_revision(engine)}")


@app.command()
@async_command
async def downgrade(
    revision: str = typer.Argument(..., help="Target revision, or 'base'."),
) -> None:
    """Downgrade the schema to an earlier revision."""
    async with database(load_settings(), require_schema=False) as engine:
        await migrations.downgrade(engine, revision)
        console.print(f"schema at revision {await migrations.current_revision(engine) or 'base'}")


@app.command()
@async_command
async def current() -> None:
    """Show the schema revision of the database and the latest one available."""
    async with database(load_settings(), require_schema=False) as engine:
        revision = await migrations.current_revision(engine)
    console.print(f"current: {revision or 'none'}  latest: {migrations.head_revision()}")
