"""Entry point: the Typer app, its command groups, and one-line error reporting."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

# Typer bundles its own click; its exceptions are not re-exported, hence the pinned minor
# version in pyproject.toml.
from typer._click import exceptions as click

from promptlooper import __version__
from promptlooper.cli.agents import agent_app, variant_app
from promptlooper.cli.cluster import ray_app
from promptlooper.cli.common import err_console
from promptlooper.cli.credentials import credential_app
from promptlooper.cli.db import app as db_app
from promptlooper.cli.online import online_app
from promptlooper.cli.server import demo, serve
from promptlooper.cli.sweeps import cache_app, export_command, sweep_app
from promptlooper.cli.training import train_app
from promptlooper.cli.users import apikey_app, user_app
from promptlooper.errors import PromptLooperError, problem_message

EXIT_ERROR = 2

app = typer.Typer(
    name="promptlooper",
    help="PromptLooper: sweeps, variants, online experiments and fine-tuning for LLM apps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.add_typer(sweep_app, name="sweep")
app.add_typer(cache_app, name="cache")
app.add_typer(credential_app, name="credential")
app.add_typer(agent_app, name="agent")
app.add_typer(variant_app, name="variant")
app.add_typer(online_app, name="online")
app.add_typer(train_app, name="train")
app.add_typer(ray_app, name="ray")
app.command("export")(export_command)
app.command()(serve)
app.command()(demo)


def _print_version(value: bool) -> None:
    if value:
        print(f"promptlooper {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Configuration comes from the environment and .env (see the README)."""


def _one_line(exc: BaseException) -> str | None:
    """The one-line message for an expected failure; None for a bug, which keeps its traceback."""
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, PromptLooperError):
        return exc.message
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]).upper()
        return f"invalid setting {field}: {problem_message(first)}"
    if isinstance(exc, OSError) and exc.filename is not None:  # a file the user named
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, SQLAlchemyError | OSError):
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"database error: {detail}"
    return None


def _usage_error(exc: click.UsageError) -> str:
    """A bad argument or option, with where to read the command's usage."""
    message = exc.format_message()
    if exc.ctx is not None:
        message += f" (see '{exc.ctx.command_path} --help')"
    return message


def main() -> None:
    """Run the CLI; any failure becomes one line on stderr and exit code 2."""
    try:
        # Not standalone: click would print its usage box for a mistyped option or argument.
        code = app(prog_name="promptlooper", standalone_mode=False)
    except click.NoArgsIsHelpError as exc:
        print(exc.format_message())
        sys.exit(EXIT_ERROR)
    except click.UsageError as exc:
        _fail(_usage_error(exc))
    except click.ClickException as exc:
        _fail(exc.format_message())
    except typer.Abort:
        err_console.print("Aborted.")
        sys.exit(1)
    except Exception as exc:
        message = _one_line(exc)
        if message is None:
            raise
        _fail(message)
    # An explicit ``typer.Exit(code)`` comes back as its code.
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> NoReturn:
    err_console.print("error: " + " ".join(message.split()))
    sys.exit(EXIT_ERROR)
