"""``resolve``: the config production code should run for an agent right now.

The active variant's overrides laid over the agent's base config, else the base config; with
where each value came from, a revision, and an ETag for cheap conditional polling.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from promptlooper.variants.config import Source, overlay, provenance
from promptlooper.variants.models import Agent, Variant


@dataclass(frozen=True, slots=True)
class Resolution:
    agent: Agent
    variant: Variant | None
    config: dict[str, Any]
    provenance: dict[str, Source]
    experiment: dict[str, str] | None = None
    """The online experiment arm that chose the variant, when resolved for a unit."""

    @property
    def source(self) -> str:
        return "agent" if self.variant is None else "variant"

    @property
    def revision(self) -> str:
        return f"{self.agent.revision}.{self.variant.revision if self.variant else 0}"

    @property
    def etag(self) -> str:
        material = json.dumps(
            [str(self.agent.id), str(self.variant.id) if self.variant else None, self.config],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(material.encode()).hexdigest()[:32]


def resolve(
    agent: Agent, active: Variant | None, experiment: dict[str, str] | None = None
) -> Resolution:
    overrides = active.overrides if active is not None else None
    return Resolution(
        agent=agent,
        variant=active,
        config=overlay(agent.config, overrides),
        provenance=provenance(agent.config, overrides),
        experiment=experiment,
    )
