"""An experiment's exports as downloads, and its markdown report read as a page.

The files are the API's, byte for byte (the same renderers, the same content types), served
here because a link authenticates with the session cookie, not the API's header.
"""

from __future__ import annotations

import json
import uuid
from typing import Literal

from fastapi import APIRouter, Request, Response
from markdown_it import MarkdownIt
from markupsafe import Markup

from promptlooper.db.deps import SessionDep
from promptlooper.projects import service as projects
from promptlooper.sweeps import export, service
from promptlooper.sweeps.search import store as search_store
from promptlooper.web.errors import PageRoute
from promptlooper.web.render import page
from promptlooper.web.session import PREFIX, ViewerDep

router = APIRouter(route_class=PageRoute, include_in_schema=False)

MEDIA_TYPES = {
    "best": ("application/json", "json"),
    "env": ("text/plain; charset=utf-8", "env"),
    "yaml": ("text/yaml; charset=utf-8", "yaml"),
    "report": ("text/markdown; charset=utf-8", "md"),
}
REPORT_TOP = 5

_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
"""Raw HTML in the report (a prompt or config value holding a tag) stays text: the renderer
escapes it, so its output is the only markup the report page trusts."""


@router.get(PREFIX + "/sweeps/{experiment_id}/export/{kind}")
async def download(
    experiment_id: uuid.UUID,
    kind: Literal["best", "env", "yaml", "report"],
    viewer: ViewerDep,
    session: SessionDep,
) -> Response:
    experiment = await service.get_experiment(session, viewer.principal, experiment_id)
    summary = await service.summary(session, experiment)
    if kind == "report":
        eliminated = await search_store.eliminated(session, experiment.id, summary)
        body = export.render_report(experiment, summary, REPORT_TOP, eliminated=eliminated)
    else:
        best = export.best_config(experiment.id, experiment.name, summary)
        if kind == "best":
            body = json.dumps(best, ensure_ascii=False, separators=(",", ":"))
        elif kind == "env":
            body = export.render_env(best)
        else:
            body = export.render_yaml(best)
    media_type, extension = MEDIA_TYPES[kind]
    filename = f"experiment-{experiment.id}-{kind}.{extension}"
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(PREFIX + "/sweeps/{experiment_id}/report")
async def report(
    request: Request, experiment_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    """The markdown report rendered as a page (raw HTML in it is shown as text)."""
    experiment = await service.get_experiment(session, viewer.principal, experiment_id)
    project = await projects.get_project(session, viewer.principal, experiment.project_id)
    summary = await service.summary(session, experiment)
    eliminated = await search_store.eliminated(session, experiment.id, summary)
    text = export.render_report(experiment, summary, REPORT_TOP, eliminated=eliminated)
    return page(
        request,
        "sweeps/report.html",
        viewer,
        project=project,
        area="sweeps",
        experiment=experiment,
        report=Markup(_markdown.render(text)),  # the renderer escaped the text in it
    )
