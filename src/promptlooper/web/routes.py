"""The web UI's routers, in the order they are tried, and the static files it serves."""

from __future__ import annotations

from fastapi import APIRouter

from promptlooper.web import (
    agents,
    demo,
    exports,
    home,
    leaderboard,
    login,
    online,
    runs,
    sweeps,
    training,
    variants,
)
from promptlooper.web.demo import static_files

router = APIRouter(include_in_schema=False)
for area in (
    login,
    home,
    sweeps,
    leaderboard,
    exports,
    runs,
    agents,
    variants,
    online,
    training,
    demo,
):
    router.include_router(area.router)

__all__ = ["router", "static_files"]
