"""Typed agent config fields, variant overlays and slugs. Pure: no I/O.

An agent has a base config; a variant stores only the fields it overrides. "Not overridden"
(the key is absent, ``UNSET``) follows later edits of the agent; "overridden" (present, even
with ``None``) does not. Resolution lays a variant's overrides over the agent's base and says,
per field, where the value came from.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from slugify import slugify as _slugify

from promptlooper.errors import Conflict, Invalid, problem_message
from promptlooper.sweeps.adapters import adapter_types
from promptlooper.sweeps.engine.templating import TemplateError, check_syntax
from promptlooper.types import UNSET, RequestBody, UnsetType

Source = Literal["agent", "variant", "default"]

MAX_TOKEN_COUNT = 100_000_000
"""Far beyond any model's context window; a larger count is a typo (or an attack on the JSON
columns and the 32-bit counters that sweeps keep), not a config."""
MAX_RETRIES = 100
MAX_TIMEOUT_SECONDS = 86_400.0


class ConfigFields(RequestBody):
    """Every config field, all optional: the same rules for a base config and for overrides."""

    model_provider: str | None = Field(default=None, min_length=1, max_length=100)
    model_name: str | None = Field(default=None, min_length=1, max_length=200)
    system_prompt: str | None = Field(default=None, max_length=100_000)
    user_prompt_template: str | None = Field(default=None, max_length=100_000)
    prompt_version: str | None = Field(default=None, max_length=100)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKEN_COUNT)
    context_window: int | None = Field(default=None, ge=1, le=MAX_TOKEN_COUNT)
    input_token_limit: int | None = Field(default=None, ge=1, le=MAX_TOKEN_COUNT)
    token_budget: int | None = Field(default=None, ge=1, le=MAX_TOKEN_COUNT)
    timeout_seconds: float | None = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS)
    max_retries: int | None = Field(default=None, ge=0, le=MAX_RETRIES)

    @field_validator("model_provider")
    @classmethod
    def _registered_provider(cls, value: str | None) -> str | None:
        """A sweep around the agent calls this provider, so it must be one that exists."""
        if value is not None and value not in adapter_types():
            raise PydanticCustomError(
                "unknown_provider",
                "unknown provider '{name}'; known: {known}",
                {"name": value, "known": ", ".join(adapter_types())},
            )
        return value

    @field_validator("system_prompt", "user_prompt_template")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        """Runs render both in the sweeps' sandbox: one that does not compile there would fail
        every run, so it is refused here, where the user can still fix it."""
        if value is not None:
            try:
                check_syntax(value)
            except TemplateError as exc:
                raise PydanticCustomError(
                    "template_syntax", "{reason}", {"reason": exc.message}
                ) from exc
        return value


CONFIG_FIELDS: tuple[str, ...] = tuple(ConfigFields.model_fields)
REQUIRED_BASE_FIELDS = ("model_provider", "model_name")


def validate_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check config values by the field rules; ``Invalid`` names the first bad field."""
    try:
        parsed = ConfigFields.model_validate(dict(values))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise Invalid(f"{where}: {problem_message(first)}") from exc
    return parsed.model_dump(include=set(values))


def base_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """A complete base config: every field present (None where not given)."""
    config = dict.fromkeys(CONFIG_FIELDS) | validate_fields(values)
    for field in REQUIRED_BASE_FIELDS:
        if not config[field]:
            raise Invalid(f"{field}: an agent needs a {field.replace('_', ' ')}")
    return config


def override(overrides: Mapping[str, Any], field: str) -> Any | UnsetType:
    """A variant's value for ``field``, or ``UNSET`` when it inherits the agent's."""
    return overrides.get(field, UNSET)


def overlay(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The effective config: each overridden field from ``overrides``, the rest from ``base``."""
    overrides = overrides or {}
    result = {}
    for field in CONFIG_FIELDS:
        value = override(overrides, field)
        result[field] = base.get(field) if value is UNSET else value
    return result


def provenance(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Source]:
    """Where each effective value comes from."""
    overrides = overrides or {}
    return {
        field: "variant"
        if field in overrides
        else ("agent" if base.get(field) is not None else "default")
        for field in CONFIG_FIELDS
    }


def changed(current: Mapping[str, Any], proposed: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``proposed`` that differ from ``current`` (absent counts as different)."""
    return {k: v for k, v in proposed.items() if k not in current or current[k] != v}


MAX_SLUG_LENGTH = 100


def slugify(name: str, fallback: str = "item") -> str:
    """Deterministic kebab-case: any script transliterated to ASCII (``Классификатор`` →
    ``klassifikator``), runs of anything else become one hyphen, no leading or trailing hyphen;
    ``fallback`` when nothing alphanumeric is left."""
    return _slugify(name, max_length=MAX_SLUG_LENGTH) or fallback


def claim_slug(
    name: str, requested: str | None, names: set[str], slugs: set[str], *, owner: str, kind: str
) -> str:
    """The slug for a new ``kind`` called ``name`` among its siblings: the requested one if
    free, else one made from the name; a name or requested slug already in use is a conflict."""
    if name in names:
        raise Conflict(f"This {owner} already has {kind} named {name!r}")
    if requested is None:
        return unique_slug(slugify(name, kind.split()[-1]), slugs)
    if requested in slugs:
        raise Conflict(f"This {owner} already has {kind} with slug {requested!r}")
    return requested


def unique_slug(base: str, taken: set[str]) -> str:
    """``base``, or ``base-2``, ``base-3``... whichever is free; ``base`` is shortened so the
    counter still fits in a slug's length."""
    if base not in taken:
        return base
    n = 2
    while (slug := _numbered(base, n)) in taken:
        n += 1
    return slug


def _numbered(base: str, n: int) -> str:
    suffix = f"-{n}"
    return base[: MAX_SLUG_LENGTH - len(suffix)].rstrip("-") + suffix


_SWEEP_PARAMS = ("temperature", "max_tokens", "timeout_seconds", "max_retries")
_BUDGET_PARAMS = ("timeout_seconds", "max_retries", "token_budget", "input_token_limit")


def from_sweep_config(run_config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Overrides from a single-stage sweep config (``prompt``, ``model``, ``system``,
    ``params``), and the parameters that have no agent field."""
    if "pipeline_stages" in run_config:
        raise Invalid("config_hash: a pipeline config does not map onto one agent config")
    values: dict[str, Any] = {}
    provider, _, model = str(run_config.get("model", "")).partition(":")
    if provider and model:
        values["model_provider"], values["model_name"] = provider, model
    if run_config.get("prompt") is not None:
        values["user_prompt_template"] = run_config["prompt"]
    if run_config.get("system") is not None:
        values["system_prompt"] = run_config["system"]
    params = dict(run_config.get("params") or {})
    values.update({k: params.pop(k) for k in _SWEEP_PARAMS if k in params})
    return validate_fields(values), sorted(params)


_SAME_NAME = ("temperature", "max_tokens", *_BUDGET_PARAMS)
"""Agent fields a sweep calls by the same name."""
_SWEEP_NAMES = ("model", "prompt", "system", *_SAME_NAME)
"""What a sweep calls the agent's fields: the parameters a sweep around an agent varies."""
_RENAMED = {
    "model_provider": "model",
    "model_name": "model",
    "user_prompt_template": "prompt",
    "system_prompt": "system",
}


def check_parameters(space: Mapping[str, Any]) -> None:
    """Refuse the parameters of a sweep around an agent that are a slip rather than a choice:
    an agent field under its agent name, or a near miss of a sweep name (``temprature``).
    Anything else (``top_p``, ``seed``, a ``config.tone`` of a template) goes to the model as
    in any sweep; a misspelt one would be sent to the provider, or silently ignored."""
    for name in space:
        if name in _SWEEP_NAMES:
            continue
        if name in _RENAMED:
            raise Invalid(f"parameter_space.{name}: a sweep calls this field {_RENAMED[name]!r}")
        close = difflib.get_close_matches(name, _SWEEP_NAMES, n=1, cutoff=0.8)
        if close:
            raise Invalid(f"parameter_space.{name}: not a parameter; did you mean {close[0]!r}?")


def as_sweep(config: Mapping[str, Any], document: Mapping[str, Any]) -> dict[str, Any]:
    """A sweep document that starts from an effective agent config.

    Each config value becomes a one-value parameter unless the document sweeps that
    parameter itself, so a sweep file needs only what it varies. Budget fields reach every
    stage: as parameters of the implicit stage, and as params of each pipeline stage that does
    not set them.
    """
    fixed: dict[str, Any] = {
        "model": f"{config['model_provider']}:{config['model_name']}",
        "prompt": config.get("user_prompt_template"),
        "system": config.get("system_prompt"),
        **{k: config.get(k) for k in _SAME_NAME},
    }
    result = dict(document)
    space = dict(result.get("parameter_space") or {})
    check_parameters(space)
    pipeline = result.get("pipeline")
    for key, value in fixed.items():
        if value is not None and key not in space:
            space[key] = [value]
    result["parameter_space"] = space
    if isinstance(pipeline, list):
        budget = {k: config[k] for k in _BUDGET_PARAMS if config.get(k) is not None}
        result["pipeline"] = [
            {**stage, "params": {**budget, **(stage.get("params") or {})}}
            if isinstance(stage, dict)
            else stage
            for stage in pipeline
        ]
    return result
