"""``promptlooper serve`` and ``promptlooper demo``."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from promptlooper import migrations
from promptlooper.cli.common import (
    RayOption,
    async_command,
    collector_paused,
    console,
    database,
    freeze_long_lived_objects,
    join_cluster,
    load_settings,
    session_scope,
    with_ray,
)
from promptlooper.errors import ConfigurationError, PromptLooperError

if TYPE_CHECKING:
    from promptlooper.settings import Settings

DEMO_USERNAME = "demo"
DEMO_PROJECT = "demo"
DEMO_SWEEP = Path("examples/support-sentiment/smollm2.yaml")

HostOption = typer.Option("127.0.0.1", "--host", help="Interface to listen on.")
PortOption = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on.")


@async_command
async def _migrate(settings: Settings) -> str | None:
    async with database(settings, require_schema=False) as engine:
        await migrations.upgrade(engine)
        return await migrations.current_revision(engine)


def _listen_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything else is done: a busy port fails the command
    at once, with nothing changed, and cannot be taken by another process in the meantime."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds its own
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _run_server(settings: Settings, sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(
        "promptlooper.api:create_app", factory=True, log_level=settings.log_level
    )
    with collector_paused():
        config.load()
        freeze_long_lived_objects()
    host, port = sock.getsockname()[:2]
    address = f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
    # uvicorn announces the address only of the sockets it binds itself
    logging.getLogger("uvicorn.error").info("Listening on http://%s (Ctrl+C to quit)", address)
    uvicorn.Server(config).run(sockets=[sock])


def serve(
    host: str = HostOption,
    port: int = PortOption,
    no_migrate: bool = typer.Option(
        False, "--no-migrate", help="Do not upgrade the database schema before starting."
    ),
    ray: str | None = RayOption,
) -> None:
    """Serve the REST API (docs at /docs), upgrading the schema first."""
    settings = with_ray(load_settings(), ray)
    if ray:  # the server's app builds its settings from the environment
        os.environ["RAY_ADDRESS"] = settings.ray_address
    join_cluster(settings)  # a cluster that does not answer stops the start, with the reason
    with _listen_socket(host, port) as sock:
        if not no_migrate:
            revision = _migrate(settings)
            console.print(f"database schema at revision {revision}")
        _run_server(settings, sock)


@async_command
async def _prepare_demo(settings: Settings) -> str:
    """The demo admin with a new password, its project with the demo agent, and the demo A/B
    registry with two weeks of visitors."""
    from promptlooper.auth import service
    from promptlooper.auth.principal import Principal
    from promptlooper.online.demo import seed_demo, seed_demo_events
    from promptlooper.projects.service import get_or_create_project
    from promptlooper.variants.demo import seed_demo_agent
    from promptlooper.variants.service import existing_variant_ids

    password = secrets.token_urlsafe(12)
    async with session_scope(settings) as session:
        user = await service.get_user_by_username(session, DEMO_USERNAME)
        if user is None:
            user = await service.create_user(session, DEMO_USERNAME, password, is_admin=True)
        else:
            await service.set_password(session, user, password)
        owner = Principal(user.id, user.username, is_admin=True, method="local")
        project = await get_or_create_project(session, owner, DEMO_PROJECT)
        await seed_demo_agent(session, owner, project.id)
        await seed_demo(session, existing_variant_ids)
        await seed_demo_events(session)
    return password


def demo(
    host: str = HostOption,
    port: int = PortOption,
    sweep: Path = typer.Option(DEMO_SWEEP, "--sweep", help="Sweep file to run before serving."),
) -> None:
    """Set up a demo: admin user, an example sweep run end to end with its exports, then serve."""
    from promptlooper.online.demo import DEMO_DAYS
    from promptlooper.training.demo import DEMO_MODEL, DEMO_STEPS

    settings = load_settings()
    with _listen_socket(host, port) as sock:
        # Each step can take minutes on a busy machine: say what is under way.
        console.print("Upgrading the database schema…")
        _migrate(settings)
        console.print(
            f"Seeding the demo user, agent and A/B experiments ({DEMO_DAYS} days of visitors)…"
        )
        password = _prepare_demo(settings)
        experiment_id = _demo_sweep(settings, sweep)
        console.print(f"Training the demo run ({DEMO_STEPS} steps of {DEMO_MODEL})…")
        run_id = _demo_training(settings)
        _print_demo(settings, f"http://{host}:{port}", password, experiment_id, run_id)
        _run_server(settings, sock)


def _demo_sweep(settings: Settings, sweep: Path) -> uuid.UUID | None:
    """Run the demo's sweep, when its file is here, and write its exports."""
    from promptlooper.cli.sweeps import run_sweep, write_exports
    from promptlooper.sweeps.spec import load_sweep_file, parse_spec

    if not sweep.exists():
        console.print(f"(no {sweep} here: skipping the example sweep)")
        return None
    spec = parse_spec(load_sweep_file(sweep))
    console.print(
        f"Running the demo sweep {escape(str(sweep))} ({escape(spec.name)})…", soft_wrap=True
    )
    experiment_id = run_sweep(settings, spec=spec, project=DEMO_PROJECT, user=DEMO_USERNAME)
    written = write_exports(settings, experiment_id, settings.data_dir / "exports")
    console.print("exports: " + "  ".join(str(p) for p in written), soft_wrap=True)
    return experiment_id


@async_command
async def _demo_training(settings: Settings) -> uuid.UUID | None:
    """A few steps of fine-tuning of the tiny model for the Training pages, on the process's
    shared backend: the server started next in this process finds its worker loaded."""
    import time

    from promptlooper.auth import service
    from promptlooper.auth.principal import Principal
    from promptlooper.db.engine import create_sessionmaker
    from promptlooper.training.backend import TrainingBackend
    from promptlooper.training.demo import seed_demo_run
    from promptlooper.training.registry import load_registry
    from promptlooper.training.trainer import Trainer

    began = time.monotonic()
    async with database(settings) as engine:
        sessions = create_sessionmaker(engine)
        async with sessions() as session:
            user = await service.get_user_by_username(session, DEMO_USERNAME)
        assert user is not None  # _prepare_demo made it
        owner = Principal(user.id, user.username, is_admin=True, method="local")
        trainer = Trainer(
            sessions,
            TrainingBackend.shared(
                settings.data_dir, settings.training_device, settings.ray_address or None
            ),
            load_registry(settings.training_models_file),
            settings.data_dir,
        )
        try:
            run = await seed_demo_run(trainer, owner)
        except PromptLooperError as exc:
            console.print(f"(no training run: {escape(exc.message)})")
            return None
        finally:
            await trainer.close()
    console.print(f"training run: {escape(run.name)} ({time.monotonic() - began:.1f} s)")
    return run.id


def _print_demo(
    settings: Settings,
    base: str,
    password: str,
    experiment_id: uuid.UUID | None,
    run_id: uuid.UUID | None,
) -> None:
    sweep_line = (
        f"{base}/ui/sweeps/{experiment_id}  (API: /api/experiments/{experiment_id})"
        if experiment_id
        else 'none run (`promptlooper demo --sweep FILE` runs one; see README "Sweeps")'
    )
    training_line = (
        f"{base}/ui/training/runs/{run_id}  (a short run on tiny-test with its curve;\n"
        '               fine-tune your own: `promptlooper train sft`, README "Training")'
        if run_id
        else f'{base}/ui/training  (fine-tune: `promptlooper train sft`, README "Training")'
    )
    cli_line = (
        f"promptlooper sweep show {experiment_id}  (every sweep: promptlooper sweep list)"
        if experiment_id
        else "promptlooper sweep list"
    )
    console.print(
        f"""
[bold]PromptLooper demo[/bold]  database: {escape(settings.async_database_url)}

  admin user:  [bold]{DEMO_USERNAME}[/bold]
  password:    [bold]{password}[/bold]   (new on every `make demo`)

  web UI:      {base}/ui/   (log in with the user and password above)
  API docs:    {base}/docs
  experiment:  {sweep_line}
  in the CLI:  {cli_line}
  online:      {base}/ui/online  (the A/B registry: homepage_hero_test, pricing_cta_test, with two
               weeks of seeded visitors; demo pages {base}/ab-demo and {base}/our-pricing)
  training:    {training_line}
  log in:      curl -s -X POST {base}/api/auth/login -H 'Content-Type: application/json' \\
                 -d '{{"username": "{DEMO_USERNAME}", "password": "{password}"}}'
""",
        markup=True,
        soft_wrap=True,
    )
