"""``/`` and ``/our-pricing``: demo pages that run the demo's two experiments through the
browser script, and ``/static``: the script itself."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.db.deps import SessionDep
from promptlooper.online import service as online

HERE = Path(__file__).parent
router = APIRouter(include_in_schema=False)
static_files = StaticFiles(directory=HERE / "static")
_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
)


async def _page(session: AsyncSession, template: str) -> HTMLResponse:
    settings = await online.site_settings(session)
    return HTMLResponse(_templates.get_template(template).render(site_name=settings.site_name))


@router.get("/", response_class=HTMLResponse)
async def home(session: SessionDep) -> HTMLResponse:
    return await _page(session, "home.html")


@router.get("/our-pricing", response_class=HTMLResponse)
async def pricing(session: SessionDep) -> HTMLResponse:
    """The page the demo's ``pricing_cta_test`` runs on."""
    return await _page(session, "pricing.html")
