"""Field-by-field comparison of an agent's base config and some of its variants.

Which fields differ, where each value comes from, and a unified diff for the prompts, so a
reviewer sees exactly what a variant changes before activating it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from promptlooper.variants.config import CONFIG_FIELDS, overlay, provenance
from promptlooper.variants.models import Agent, Variant

PROMPT_FIELDS = ("system_prompt", "user_prompt_template")
K = TypeVar("K")


def compare(agent: Agent, variants: Sequence[Variant]) -> dict[str, Any]:
    """``fields``: per field, the value of the agent and of each variant (by slug), whether
    they differ and each value's source; ``prompt_diffs``: each variant's prompt changes."""
    configs = {"agent": dict(agent.config)} | {
        v.slug: overlay(agent.config, v.overrides) for v in variants
    }
    sources = {"agent": dict.fromkeys(CONFIG_FIELDS, "agent")} | {
        v.slug: provenance(agent.config, v.overrides) for v in variants
    }
    fields = [
        {
            "field": field,
            "differs": len({repr(c[field]) for c in configs.values()}) > 1,
            "values": {name: c[field] for name, c in configs.items()},
            "sources": {name: s[field] for name, s in sources.items()},
        }
        for field in CONFIG_FIELDS
    ]
    diffs = []
    for variant in variants:
        for field in PROMPT_FIELDS:
            before = agent.config.get(field) or ""
            after = configs[variant.slug][field] or ""
            if before != after:
                # Lines without their endings: a text whose last line has no newline would
                # otherwise run its removed and added lines together.
                lines = difflib.unified_diff(
                    before.splitlines(),
                    after.splitlines(),
                    fromfile=f"agent/{field}",
                    tofile=f"{variant.slug}/{field}",
                    lineterm="",
                )
                diff = "\n".join(lines) + "\n"
                diffs.append({"variant": variant.slug, "field": field, "diff": diff})
    return {"fields": fields, "prompt_diffs": diffs}


def clearly_best(intervals: Mapping[K, tuple[float | None, float | None]]) -> K | None:
    """The one whose 95 % interval lies wholly above every other's (higher is better), or
    None: a difference the intervals cannot tell from noise names no winner."""
    known = {k: (lo, hi) for k, (lo, hi) in intervals.items() if lo is not None and hi is not None}
    if len(known) < 2 or len(known) < len(intervals):
        return None
    for key, (low, _) in known.items():
        if all(low > high for k, (_, high) in known.items() if k != key):  # type: ignore[operator]
            return key
    return None
