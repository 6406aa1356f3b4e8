"""``/ab-demo`` and ``/our-pricing``: demo pages that run the demo's two experiments through the
browser script, and ``/static``: the script, the UI's stylesheet and its vendored files."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.db.deps import SessionDep
from promptlooper.online import service as online
from promptlooper.web.render import HERE, templates

router = APIRouter(include_in_schema=False)
static_files = StaticFiles(directory=HERE / "static")


async def _page(session: AsyncSession, template: str) -> HTMLResponse:
    settings = await online.site_settings(session)
    return HTMLResponse(templates.get_template(template).render(site_name=settings.site_name))


@router.get("/ab-demo", response_class=HTMLResponse)
async def ab_demo(session: SessionDep) -> HTMLResponse:
    """The page the demo's ``homepage_hero_test`` runs on."""
    return await _page(session, "demo/home.html")


@router.get("/our-pricing", response_class=HTMLResponse)
async def pricing(session: SessionDep) -> HTMLResponse:
    """The page the demo's ``pricing_cta_test`` runs on."""
    return await _page(session, "demo/pricing.html")
