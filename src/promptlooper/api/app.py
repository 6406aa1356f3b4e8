"""Application factory: settings in, a wired FastAPI app out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper import __version__
from promptlooper.api.bodylimit import BodyFamily, BodyLimit
from promptlooper.api.cors import PublicCORS
from promptlooper.api.direct import DirectRoutes
from promptlooper.api.errors import install_error_handlers
from promptlooper.api.health import router as health_router
from promptlooper.api.openapi import document_errors
from promptlooper.auth.cache import PrincipalCache
from promptlooper.auth.ratelimit import LoginThrottle
from promptlooper.auth.routes import router as auth_router
from promptlooper.auth.service import AuthConfig
from promptlooper.db.engine import create_engine, create_sessionmaker, read_only
from promptlooper.events import EventBus
from promptlooper.online.ingestion import Intake
from promptlooper.online.origins import Origins
from promptlooper.online.routes import BROWSER_PATHS, INGESTION, REJECTED_HEADER
from promptlooper.online.routes import admin_router as online_admin_router
from promptlooper.online.routes import public_router as online_public_router
from promptlooper.online.upkeep import Upkeep
from promptlooper.projects.routes import router as projects_router
from promptlooper.settings import Settings
from promptlooper.sweeps import service as sweeps_service
from promptlooper.sweeps.credentials.routes import router as credentials_router
from promptlooper.sweeps.execution import ExecutionOptions, SweepJobs
from promptlooper.sweeps.lease import mark_interrupted
from promptlooper.sweeps.providers import ProviderPolicy
from promptlooper.sweeps.routes import create_experiment as create_sweep
from promptlooper.sweeps.routes import export_router as sweeps_export_router
from promptlooper.sweeps.routes import router as sweeps_router
from promptlooper.sweeps.store import CacheBound
from promptlooper.training.backend import TrainingBackend
from promptlooper.training.registry import load_registry
from promptlooper.training.routes import router as training_router
from promptlooper.training.trainer import Trainer
from promptlooper.variants import performance
from promptlooper.variants import service as variants_service
from promptlooper.variants.offline import sweep_scores
from promptlooper.variants.routes import PERFORMANCE, performance_router, sweep_agent
from promptlooper.variants.routes import router as variants_router
from promptlooper.web import sweeps as sweep_pages
from promptlooper.web.limits import body_too_large
from promptlooper.web.routes import router as web_router
from promptlooper.web.routes import static_files
from promptlooper.web.session import PREFIX

PUBLIC_PATHS = frozenset(
    {
        "/api/health",
        "/api/auth/login",
        "/api/experiments",
        "/api/experiments/{experiment_key}/assignment",
        "/api/experiments/event",
        "/api/experiments/impression",
        "/api/experiments/batch",
    }
)
"""API routes that answer without credentials; every other API route requires them. (The
demo page at ``/`` and ``/static`` are outside the API and public too.)"""
AB_SCRIPT = "/static/promptlooper-ab.js"
DOCS_ASSETS = "/static-docs"

logger = logging.getLogger(__name__)


def _paths(router: APIRouter, *endpoints: Callable[..., Any]) -> list[str]:
    return [r.path for r in router.routes if isinstance(r, APIRoute) and r.endpoint in endpoints]


def _body_families(settings: Settings) -> tuple[BodyFamily, ...]:
    """The routes whose bodies have a limit other than MAX_BODY_BYTES."""
    documents = [
        *_paths(sweeps_router, create_sweep),
        *_paths(variants_router, sweep_agent),
        *_paths(sweep_pages.router, sweep_pages.create_experiment),
    ]
    return (
        BodyFamily(
            tuple(route.path for route, _ in INGESTION),
            settings.max_body_public_bytes,
            "MAX_BODY_PUBLIC_BYTES",
        ),
        BodyFamily(documents, settings.max_body_document_bytes, "MAX_BODY_DOCUMENT_BYTES"),
    )


def _operation_id(route: APIRoute) -> str:
    tag = str(route.tags[0]).replace(" ", "_") if route.tags else "default"
    return f"{tag}-{route.name}"


async def _recover_experiments(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Mark experiments whose process died (their lease lapsed) as interrupted: resumable.
    A database that is not there yet only delays this to the next start."""
    try:
        async with sessionmaker() as session:
            marked = await mark_interrupted(session)
            await session.commit()
    except Exception as exc:
        logger.warning("could not look for interrupted experiments: %s", exc)
        return
    if marked:
        logger.warning("%d experiment(s) were interrupted; start resumes them", marked)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Nothing connects until the first request; shutdown releases the pools."""
    settings = settings or Settings()
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    reader = read_only(engine)
    event_bus = EventBus(settings.redis_url)
    provider_policy = ProviderPolicy.server(settings)
    sweep_jobs = SweepJobs(
        engine,
        event_bus,
        ExecutionOptions(
            policy=provider_policy,
            allow_python=settings.allow_python_callables,
            cache_bound=CacheBound.from_settings(settings),
            lease_seconds=settings.sweep_lease_seconds,
            max_runs=settings.sweep_max_runs,
            ray_address=settings.ray_address or None,
        ),
    )

    trainer = Trainer(
        sessionmaker,
        TrainingBackend.shared(
            settings.data_dir, settings.training_device, settings.ray_address or None
        ),
        load_registry(settings.training_models_file),
        settings.data_dir,
    )

    upkeep = Upkeep(sessionmaker, settings.online_upkeep_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await _recover_experiments(sessionmaker)
        upkeep.start()
        yield
        await upkeep.close()
        await trainer.close()
        await asyncio.to_thread(trainer.backend.shutdown)
        await sweep_jobs.shutdown()
        await event_bus.close()
        await engine.dispose()

    # /docs and /redoc with their scripts and styles served from the package, not a CDN: the
    # pages work on a machine with no way out.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="PromptLooper",
        version=__version__,
        summary="Sweeps, variants, online experiments and fine-tuning for LLM applications.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.reader = reader
    app.state.sessionmaker = sessionmaker
    app.state.event_bus = event_bus
    app.state.sweep_jobs = sweep_jobs
    app.state.provider_policy = provider_policy
    app.state.project_guards = (
        sweeps_service.refuse_running_experiments,
        variants_service.refuse_linked_agents,
    )
    app.state.known_agent_variants = variants_service.existing_variant_ids
    app.state.sweep_scores = sweep_scores
    app.state.intake = Intake(sessionmaker, reader)
    app.state.origins = Origins(settings.cors_origins)
    app.state.performance_log = performance.writer(sessionmaker)
    app.state.trainer = trainer
    app.state.auth_config = AuthConfig(
        jwt_secret=settings.jwt_secret_value(),
        jwt_expire_minutes=settings.jwt_expire_minutes,
        bootstrap_key=settings.api_key.get_secret_value() if settings.api_key else None,
    )
    app.state.principals = PrincipalCache(settings.api_key_cache_seconds)
    app.state.login_throttle = LoginThrottle(settings.login_rate_limit)

    install_error_handlers(app)
    document_errors(app)
    # The router tries routes in order, and each try has a cost: the routes that take the most
    # traffic come first. Ingestion and the agents' performance log (a record per call served)
    # skip the router altogether (``DirectRoutes``); next come assignment, then training's
    # primitives, which an SDK loop calls twice a step.
    for router in (
        online_public_router,
        health_router,
        performance_router,
        training_router,
        auth_router,
        projects_router,
        sweeps_router,
        sweeps_export_router,
        credentials_router,
        variants_router,
        online_admin_router,
        web_router,
    ):
        app.include_router(router)
    app.mount("/static", static_files, name="static")
    app.add_middleware(DirectRoutes, routes=[*INGESTION, *PERFORMANCE])
    app.add_middleware(
        BodyLimit,
        default=BodyFamily((), settings.max_body_bytes, "MAX_BODY_BYTES"),
        families=_body_families(settings),
        pages=(PREFIX + "/", body_too_large),
    )
    app.add_middleware(
        PublicCORS,
        origins=settings.cors_origins,
        paths=(*BROWSER_PATHS, AB_SCRIPT),
        expose_headers=(REJECTED_HEADER,),
    )
    return app
