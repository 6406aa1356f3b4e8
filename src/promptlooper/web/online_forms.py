"""The online experiment form: a definition as form fields and back, a variable number of
variant rows, and service refusals beside the field they name.

Variant rows are numbered inputs (``variants.0.variant_key``, ...) with one "control" radio
across them; rows left blank are ignored, so the form shows a few spare rows and an "add a
variant" button re-renders it with one more, without JavaScript. Problems that pydantic reports
for the Nth variant it was given are moved back to the row that variant was typed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from promptlooper.errors import PromptLooperError
from promptlooper.online.models import OnlineExperiment
from promptlooper.web.forms import FORM_ERROR

VARIANT_FIELDS = ("variant_key", "label", "allocation", "agent_variant_id")
SPARE_ROWS = 2
MIN_ROWS = 3
MAX_ROWS = 20
GUARDRAIL = "guardrail."
SECONDARY = "secondary."
"""Prefix of the guardrail metric boxes (one per event type)."""

_ROW_ERROR = re.compile(r"^variants\.(\d+)\.(.+)$")


def _row(index: int, name: str) -> str:
    return f"variants.{index}.{name}"


def row_count(form: Mapping[str, str]) -> int:
    """Rows to show: those typed in, plus spares (one more when "add a variant" was pressed)."""
    used = [
        i for i in range(MAX_ROWS) if any(form.get(_row(i, f), "").strip() for f in VARIANT_FIELDS)
    ]
    last = (max(used) + 1) if used else 0
    wanted = max(
        last + SPARE_ROWS, MIN_ROWS, _int(form.get("rows")) + bool(form.get("add_variant"))
    )
    return min(wanted, MAX_ROWS)


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _checked(form: Mapping[str, str], prefix: str) -> list[str]:
    """The metric names whose checkbox under ``prefix`` is ticked."""
    return [name[len(prefix) :] for name, on in form.items() if name.startswith(prefix) and on]


def definition_data(form: Mapping[str, str]) -> tuple[dict[str, Any], list[int]]:
    """The definition the form describes, for the API's schema, and the form row of each
    variant in it (a blank field is left out, so the schema's default applies)."""
    data: dict[str, Any] = {
        "name": form.get("name", ""),
        "description": form.get("description", ""),
        "cookie_name": form.get("cookie_name", "").strip(),
        "enabled": bool(form.get("enabled")),
        "eligible_routes": [
            line.strip() for line in form.get("eligible_routes", "").splitlines() if line.strip()
        ],
        "secondary_metrics": _checked(form, SECONDARY),
        "guardrail_metrics": _checked(form, GUARDRAIL),
    }
    for name in ("status", "primary_metric", "coverage", "hash_seed"):
        if form.get(name, "").strip():
            data[name] = form[name].strip()
    if form.get("experiment_key", "").strip():
        data["experiment_key"] = form["experiment_key"].strip()
    variants: list[dict[str, Any]] = []
    rows: list[int] = []
    for index in range(MAX_ROWS):
        typed = {f: form.get(_row(index, f), "").strip() for f in VARIANT_FIELDS}
        if not any(typed.values()):
            continue
        variant: dict[str, Any] = {
            "variant_key": typed["variant_key"],
            "label": form.get(_row(index, "label"), ""),
            "allocation": typed["allocation"],
            "is_control": form.get("control") == str(index),
        }
        if typed["agent_variant_id"]:
            variant["agent_variant_id"] = typed["agent_variant_id"]
        variants.append(variant)
        rows.append(index)
    data["variants"] = variants
    return data, rows


def kept_settings(experiment: OnlineExperiment, data: dict[str, Any]) -> dict[str, Any]:
    """The settings the form does not show (a bandit's type and schedule, auto-stop and the
    guardrail thresholds, set through the API or the CLI), carried over so that saving the
    form never drops them; a threshold goes with its metric when the form unticks it, and
    auto-stop with the last threshold."""
    guarded = set(data.get("guardrail_metrics", []))
    thresholds = {
        name: rule
        for name, rule in (experiment.guardrail_thresholds or {}).items()
        if name in guarded
    }
    return {
        "type": experiment.type,
        "auto_stop": experiment.auto_stop and bool(thresholds),  # nothing left to stop on
        "guardrail_thresholds": thresholds,
        "bandit": experiment.bandit,
    }


def place_errors(errors: dict[str, str], rows: list[int]) -> dict[str, str]:
    """Problems keyed by the form's own field names: a variant's by its row, the schema's
    whole-definition checks on the variants ("allocations must sum to 100") beside them."""
    placed: dict[str, str] = {}
    for key, message in errors.items():
        if found := _ROW_ERROR.match(key):
            index = int(found[1])
            key = _row(rows[index], found[2]) if index < len(rows) else "variants"
        elif key == FORM_ERROR and message.startswith("variants: "):
            key, message = "variants", message.removeprefix("variants: ")
        placed.setdefault(key, message)
    return placed


def refusal(
    exc: PromptLooperError, service_keys: list[str], rows_by_key: Mapping[str, int]
) -> dict[str, str]:
    """A service's refusal beside the field it is about. The service numbers variants in its
    own order (control first), ``service_keys``; ``rows_by_key`` gives each one's form row."""
    message = exc.message
    head, sep, rest = message.partition(": ")
    if sep and (found := _ROW_ERROR.match(head)):
        index = int(found[1])
        key = service_keys[index] if index < len(service_keys) else None
        if key in rows_by_key:
            return {_row(rows_by_key[key], found[2]): rest}
        return {"variants": message}
    if sep and head in ("variants", "status"):
        return {head: rest}
    if message.startswith("cookie_name"):
        return {"cookie_name": message}
    if message.startswith("An experiment with key"):
        return {"experiment_key": message}
    return {FORM_ERROR: message}


def form_of(experiment: OnlineExperiment) -> dict[str, str]:
    """An experiment as its edit form shows it."""
    form = {
        "name": experiment.name,
        "description": experiment.description,
        "cookie_name": experiment.cookie_name,
        "enabled": "on" if experiment.enabled else "",
        "status": experiment.status,
        "eligible_routes": "\n".join(experiment.eligible_routes),
        "coverage": f"{experiment.coverage:g}",
        "hash_seed": experiment.hash_seed,
        "primary_metric": experiment.primary_metric,
    }
    form |= {SECONDARY + m: "on" for m in experiment.secondary_metrics}
    form |= {GUARDRAIL + m: "on" for m in experiment.guardrail_metrics}
    for index, variant in enumerate(experiment.variants):
        form[_row(index, "variant_key")] = variant["variant_key"]
        form[_row(index, "label")] = variant.get("label", "")
        form[_row(index, "allocation")] = f"{variant['allocation']:g}"
        form[_row(index, "agent_variant_id")] = variant.get("agent_variant_id") or ""
        if variant.get("is_control"):
            form["control"] = str(index)
    return form
