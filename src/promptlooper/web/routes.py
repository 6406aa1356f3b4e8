"""``/``: a demo page that runs the homepage experiment through the browser script, and
``/static``: the script itself."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from promptlooper.db.deps import SessionDep
from promptlooper.online import service as online

HERE = Path(__file__).parent
router = APIRouter(include_in_schema=False)
static_files = StaticFiles(directory=HERE / "static")
_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
)


@router.get("/", response_class=HTMLResponse)
async def home(session: SessionDep) -> HTMLResponse:
    settings = await online.site_settings(session)
    page = _templates.get_template("home.html").render(site_name=settings.site_name)
    return HTMLResponse(page)
