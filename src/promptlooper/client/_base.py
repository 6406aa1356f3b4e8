"""What both clients share: where the server is, how to authenticate, the resources."""

from __future__ import annotations

import os
from typing import Any

from promptlooper.client.calls import ResolveCache
from promptlooper.client.online import Online
from promptlooper.client.resources import (
    Agents,
    Credentials,
    Experiments,
    Projects,
    Runner,
    Variants,
)
from promptlooper.client.training import Training

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TTL = 30.0


def connection(
    base_url: str | None, api_key: str | None, token: str | None
) -> tuple[str, dict[str, str]]:
    """The server URL and auth headers, from the arguments or ``PROMPTLOOPER_URL`` and
    ``PROMPTLOOPER_API_KEY``."""
    url = (base_url or os.environ.get("PROMPTLOOPER_URL") or DEFAULT_URL).rstrip("/")
    key = api_key or os.environ.get("PROMPTLOOPER_API_KEY")
    headers = {"User-Agent": "promptlooper-sdk"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif key:
        headers["X-Api-Key"] = key
    return url, headers


class Resources:
    projects: Projects
    agents: Agents
    variants: Variants
    experiments: Experiments
    credentials: Credentials
    training: Training
    online: Online

    def _attach(self, run: Runner, project_id: Any, ttl: float) -> None:
        project = str(project_id) if project_id else None
        self.resolve_cache = ResolveCache(ttl)
        self.projects = Projects(run)
        self.agents = Agents(run, project)
        self.variants = Variants(run, project)
        self.experiments = Experiments(run, project)
        self.credentials = Credentials(run, project)
        self.training = Training(run)
        self.online = Online(run)
