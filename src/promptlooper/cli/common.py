"""Shared CLI plumbing: settings, database access, async commands and consoles."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from promptlooper import migrations
from promptlooper.errors import ConfigurationError, Invalid

if TYPE_CHECKING:  # database and settings machinery loads when a command needs it
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from promptlooper.settings import Settings

# Names, prompts, responses and dataset fields are user text: printed as written, never read
# as Rich markup (`[/bold]` would raise) or emoji codes (`:x:`). Styling is asked for by a
# renderable (a progress column, `Text`), never by the text itself.
# Piped output is read by programs and wide terminals alike: do not wrap it at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200, markup=False, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

P = ParamSpec("P")
T = TypeVar("T")


def async_command(func: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Let a Typer command be written as ``async def``."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return asyncio.run(func(*args, **kwargs))

    return wrapper


@asynccontextmanager
async def database(
    settings: Settings, *, require_schema: bool = True
) -> AsyncIterator[AsyncEngine]:
    """An engine for the command's lifetime.

    A new, empty SQLite database gets its schema here, so that a first command works on a
    workstation without `db upgrade`; any other database that is not at the latest revision is
    refused, since upgrading a shared server's database is an operator's explicit act.
    """
    from promptlooper.db.engine import create_engine

    engine = create_engine(settings)
    try:
        if require_schema:
            await _ensure_schema(engine)
        yield engine
    finally:
        await engine.dispose()


async def _ensure_schema(engine: AsyncEngine) -> None:
    current = await migrations.current_revision(engine)
    if current == migrations.HEAD:
        return
    if current is None and engine.dialect.name == "sqlite" and await migrations.is_empty(engine):
        await migrations.upgrade(engine)
        err_console.print(f"created a new database: {engine.url.database}")
        return
    raise ConfigurationError(
        "the database schema is not up to date; run `promptlooper db upgrade` first"
    )


@asynccontextmanager
async def session_scope(settings: Settings) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block succeeds, rolls back when it raises."""
    from promptlooper.db.engine import create_sessionmaker

    async with database(settings) as engine, create_sessionmaker(engine)() as session:
        yield session
        await session.commit()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run a long-lived command's start-up without the cycle collector.

    Start-up allocates a few hundred thousand objects that live as long as the process
    (modules, mapped classes, the app, the experiment) and hardly any garbage; collections
    during it only rescan them (~60 ms of a 0.9 s sweep, counted with ``gc.callbacks``).
    ``freeze_long_lived_objects`` turns the collector back on once they are frozen; leaving the
    block does it in any case, so an early error cannot leave it off.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def freeze_long_lived_objects() -> None:
    """Take everything allocated so far (modules, the app, the engine) out of the garbage
    collector's sight, then let it run: what start-up built lives as long as the process, and
    each full collection would scan it again. Measured: a quarter of a busy server's CPU;
    ~80 ms of a 600-call sweep."""
    gc.freeze()
    gc.enable()


M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter: blocks at least this large get their own mapping."""
MMAP_THRESHOLD = 128 * 1024
"""glibc's default, set explicitly so that it stays there."""


def release_freed_memory() -> None:
    """Give the system back what a finished phase of a long command freed, before the next
    phase grows: the dataset and pages a sweep's execution held would otherwise stay in the
    process under the leaderboard's own peak. The execution's objects were frozen at its
    start, so they are unfrozen to let a collection free their cycles, and frozen again; then
    glibc's allocator is asked to return its free pages (``malloc_trim``: elsewhere, freed
    memory stays with the allocator as before).

    glibc also raises its mmap threshold each time a large block is freed (up to 32 MB), so
    after the execution the next phase's growing arrays (a summary's per-config scores, each
    reallocated as it grows) would come from the heap, where every copy they outgrow is a
    hole the heap keeps. Setting the threshold turns that adjustment off: blocks of 128 KiB
    and more get their own mappings again, which go back to the system when freed."""
    import ctypes.util

    gc.unfreeze()
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def load_settings() -> Settings:
    """Settings from the environment and ``.env``, read when a command runs."""
    from promptlooper.settings import Settings

    return Settings()


RayOption = typer.Option(
    None,
    "--ray",
    metavar="ADDRESS",
    help="Make the calls on the Ray cluster at ADDRESS (host:port of its head node; "
    "default: the RAY_ADDRESS setting).",
)


def with_ray(settings: Settings, address: str | None) -> Settings:
    """``settings`` with ``--ray``'s address, when given, in place of ``RAY_ADDRESS``."""
    from promptlooper.settings import ray_address

    if not address:
        return settings
    try:
        checked = ray_address(address)
    except ValueError as exc:
        raise Invalid(f"--ray: {exc}") from None
    return settings.model_copy(update={"ray_address": checked})


def join_cluster(settings: Settings) -> None:
    """Join the configured Ray cluster, if any, before a command creates or starts anything:
    an address that does not answer is one line and exit 2, within RAY_CONNECT_SECONDS."""
    if settings.ray_address:
        from promptlooper import raycluster

        err_console.print(f"connecting to the Ray cluster at {settings.ray_address} …")
        raycluster.connect(settings.ray_address, settings.ray_connect_seconds)
