"""The online experiment form: a definition as form fields and back, a variable number of
variant rows, and service refusals beside the field they name.

Variant rows are numbered inputs (``variants.0.variant_key``, ...) with one "control" radio
across them; rows left blank are ignored, so the form shows a few spare rows and an "add a
variant" button re-renders it with one more, without JavaScript. Problems that pydantic reports
for the Nth variant it was given are moved back to the row that variant was typed in.

The other inputs are named by the API field they fill (``bandit.floor``,
``guardrail_thresholds.cost-per-call.threshold``), so a problem the schema or the service
reports at a field path lands beside the input of that name, with the API's own message; a
check of the whole definition that names other fields ("give guardrail_thresholds") says it in
the form's terms instead (``FORM_WORDS``), since the form shows labels and boxes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from promptlooper.errors import NAMED_FIELD, PromptLooperError
from promptlooper.online.models import OnlineExperiment
from promptlooper.web.forms import FORM_ERROR

VARIANT_FIELDS = ("variant_key", "label", "allocation", "agent_variant_id")
SPARE_ROWS = 2
MIN_ROWS = 3
MAX_ROWS = 20
GUARDRAIL = "guardrail."
SECONDARY = "secondary."
"""Prefix of the guardrail metric boxes (one per event type)."""
THRESHOLDS = "guardrail_thresholds."
"""Prefix of a guardrail metric's threshold and scale inputs (``...NAME.threshold``)."""
BANDIT = "bandit."
BANDIT_FIELDS = ("every_exposures", "every_seconds", "floor")

_ROW_ERROR = re.compile(r"^variants\.(\d+)\.(.+)$")
_THRESHOLD = re.compile(r"^guardrail_thresholds\.([^.]+)\.(threshold|scale)$")
_LISTED = re.compile(r"^(secondary_metrics|guardrail_metrics|eligible_routes)\.\d+$")


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


def _number(text: str) -> float | str:
    """A typed number as a number (the schema takes a threshold only as one, as the API does);
    anything else as typed, for the schema to refuse with its message."""
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _thresholds(form: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The guardrail thresholds typed, by metric; a row whose threshold is blank has none."""
    rules: dict[str, dict[str, Any]] = {}
    for key, text in form.items():
        if (found := _THRESHOLD.match(key)) and found[2] == "threshold" and text.strip():
            name = found[1]
            rules[name] = {"threshold": _number(text.strip())}
            if scale := form.get(f"{THRESHOLDS}{name}.scale", "").strip():
                rules[name]["scale"] = scale
    return dict(sorted(rules.items()))


def definition_data(form: Mapping[str, str]) -> tuple[dict[str, Any], list[int]]:
    """The definition the form describes, for the API's schema, and the form row of each
    variant in it (a blank field is left out, so the schema's default applies)."""
    data: dict[str, Any] = {
        "type": form.get("type", "").strip() or "ab",
        "name": form.get("name", ""),
        "description": form.get("description", ""),
        "cookie_name": form.get("cookie_name", "").strip(),
        "enabled": bool(form.get("enabled")),
        "eligible_routes": [
            line.strip() for line in form.get("eligible_routes", "").splitlines() if line.strip()
        ],
        "secondary_metrics": _checked(form, SECONDARY),
        "guardrail_metrics": _checked(form, GUARDRAIL),
        "auto_stop": bool(form.get("auto_stop")),
        "guardrail_thresholds": _thresholds(form),
    }
    if data["type"] == "bandit":
        # Blank fields take the schedule's defaults; an A/B test's form ignores them.
        data["bandit"] = {
            f: form[BANDIT + f].strip() for f in BANDIT_FIELDS if form.get(BANDIT + f, "").strip()
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


_SHOWN = frozenset(
    {"experiment_key", "name", "description", "cookie_name", "variants", "eligible_routes",
     "coverage", "hash_seed", "status", "primary_metric", "secondary_metrics",
     "guardrail_metrics", "type", "auto_stop", "bandit", *(BANDIT + f for f in BANDIT_FIELDS)}
)  # fmt: skip
"""The inputs an error can be shown beside (besides variant rows and thresholds)."""


def _shown(path: str) -> bool:
    """Whether the form has an input for a field path's problem."""
    return bool(_ROW_ERROR.match(path)) or _input(path) in _SHOWN or path.startswith(THRESHOLDS)


def _input(path: str) -> str:
    """The input a field path is shown beside: a metric list's entry beside the list, a
    guardrail threshold's rule beside its threshold input."""
    if found := _LISTED.match(path):
        return found[1]
    if path.startswith(THRESHOLDS) and not _THRESHOLD.match(path):
        return f"{THRESHOLDS}{path.removeprefix(THRESHOLDS).split('.')[0]}.threshold"
    return path


def place_errors(errors: dict[str, str], rows: list[int]) -> dict[str, str]:
    """Problems keyed by the form's own field names: a variant's by its row, and a check of
    the whole definition that names its field first ("allocations must sum to 100" on
    ``variants``, ``auto_stop`` without a threshold) beside that field, without the name."""
    placed: dict[str, str] = {}
    for key, message in errors.items():
        if key == FORM_ERROR and (named := NAMED_FIELD.match(message)) and _shown(named[1]):
            key, message = named[1], message[named.end() :]
        if found := _ROW_ERROR.match(key):
            index = int(found[1])
            key = _row(rows[index], found[2]) if index < len(rows) else "variants"
        placed.setdefault(_input(key), message)
    return placed


def refusal(exc: PromptLooperError, rows: list[int]) -> dict[str, str]:
    """A service's refusal beside the field it is about. The service numbers variants as
    they were sent, and ``rows`` gives each one's form row."""
    message = exc.message
    head, sep, rest = message.partition(": ")
    if sep and (found := _ROW_ERROR.match(head)):
        index = int(found[1])
        if index < len(rows):
            return {_row(rows[index], found[2]): rest}
        return {"variants": message}
    if sep and NAMED_FIELD.fullmatch(head + sep) and _shown(head):
        return {_input(head): rest}
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
        "type": experiment.type,
        "auto_stop": "on" if experiment.auto_stop else "",
    }
    for field, value in (experiment.bandit or {}).items():
        form[BANDIT + field] = f"{value:g}"
    for name, rule in (experiment.guardrail_thresholds or {}).items():
        form[f"{THRESHOLDS}{name}.threshold"] = f"{rule['threshold']:g}"
        form[f"{THRESHOLDS}{name}.scale"] = rule.get("scale", "relative")
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
