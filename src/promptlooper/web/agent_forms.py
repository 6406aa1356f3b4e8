"""Agent and variant config forms: one input per config field, what a blank input means, and
service refusals turned into problems beside the field they name.

A blank input is "not set" (an agent leaves the field empty, or clears it on the base config's
edit form; a new variant inherits it); on a variant's edit form each field also has an
"inherit" box, so an override can be handed back to the agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptlooper.errors import PromptLooperError
from promptlooper.variants.config import CONFIG_FIELDS
from promptlooper.web.forms import FORM_ERROR


@dataclass(frozen=True, slots=True)
class ConfigInput:
    name: str
    label: str
    kind: str
    """``text``, ``number`` or ``textarea``."""
    step: str = ""


_LABELS = {
    "model_provider": ("Model provider", "text", ""),
    "model_name": ("Model name", "text", ""),
    "system_prompt": ("System prompt", "textarea", ""),
    "user_prompt_template": ("User prompt template", "textarea", ""),
    "prompt_version": ("Prompt version", "text", ""),
    "temperature": ("Temperature", "number", "any"),
    "max_tokens": ("Max tokens", "number", "1"),
    "context_window": ("Context window", "number", "1"),
    "input_token_limit": ("Input token limit", "number", "1"),
    "token_budget": ("Token budget", "number", "1"),
    "timeout_seconds": ("Timeout (seconds)", "number", "any"),
    "max_retries": ("Max retries", "number", "1"),
}
INPUTS = tuple(ConfigInput(name, *_LABELS[name]) for name in CONFIG_FIELDS)
"""Every config field as a form input, in the config's own order."""

INHERIT = "inherit_"
"""Prefix of the edit form's per-field "inherit the agent's value" box."""


def shown(value: Any) -> str:
    """A config value as a form input shows it ("" for none)."""
    return "" if value is None else str(value)


def typed_config(form: Mapping[str, str]) -> dict[str, str]:
    """The config fields given a value: a blank input sets nothing."""
    return {f: form[f] for f in CONFIG_FIELDS if form.get(f, "").strip()}


def base_values(form: Mapping[str, str]) -> dict[str, str | None]:
    """What an edit of the agent's base config asks: every field, a blank one "not set"."""
    return {f: form[f] if form.get(f, "").strip() else None for f in CONFIG_FIELDS}


def edit_values(
    form: Mapping[str, str], overrides: Mapping[str, Any]
) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """What an edit form asks: values to override, fields to inherit, and problems.

    A ticked "inherit" box hands an override back to the agent; on a field that already
    inherits, typing a value overrides it (the box was ticked only because it inherited). An
    override emptied without ticking the box is a question, not a guess: it is refused (an
    override to "not set", which shows blank, stays as it is).
    """
    values: dict[str, str] = {}
    inherit: list[str] = []
    errors: dict[str, str] = {}
    for field in CONFIG_FIELDS:
        typed = form.get(field, "")
        ticked = bool(form.get(INHERIT + field))
        if field in overrides:
            if ticked:
                inherit.append(field)
            elif typed.strip():
                values[field] = typed
            elif overrides[field] is not None:  # an override to "not set" shows blank: kept
                errors[field] = "Enter a value, or tick “inherit” to follow the agent's value"
        elif typed.strip():
            values[field] = typed
    return values, inherit, errors


def refusal(exc: PromptLooperError) -> dict[str, str]:
    """A service's refusal beside the field it names (``temperature: ...``), a name or slug
    clash beside the name or slug, anything else on the whole form."""
    head, sep, rest = exc.message.partition(": ")
    if sep and head in CONFIG_FIELDS:
        return {head: rest}
    if "with slug" in exc.message:
        return {"slug": exc.message}
    if " named " in exc.message:
        return {"name": exc.message}
    return {FORM_ERROR: exc.message}
