"""The sweep document: its schema, and loading it from a YAML/JSON file.

The same document is a sweep file for the CLI and the JSON body of
``POST /api/projects/{id}/experiments``. Files it refers to (``{file: ...}`` prompts, a dataset
``path``) are read by ``load_sweep_file`` relative to the sweep file, so what is stored is
self-contained and reproducible; the API accepts only inline content.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    ConfigDict,
    Field,
    InstanceOf,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from promptlooper.errors import Invalid, problem_message
from promptlooper.files import read_lines, read_text
from promptlooper.sweeps.adapters.tls import trusted_context
from promptlooper.sweeps.rows import PackedRows
from promptlooper.types import RequestBody, pattern_words

MAX_ROWS = 100_000
MAX_CA_BUNDLE = 1_000_000  # characters; the whole Mozilla bundle is about 220,000

Name = Annotated[str, Field(min_length=1, max_length=200)]
CredentialName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
    pattern_words(
        "must start with a letter or digit, then letters, digits, _ . or - only "
        "(64 characters at most)"
    ),
]
"""A project credential's name: what a sweep's ``credential:`` and the API's path say."""


class StageSpec(RequestBody):
    prompt_template: str = Field(min_length=1)
    model: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    system: str | None = None
    name: str | None = None


class DatasetSpec(RequestBody):
    rows: list[dict[str, Any]] | SkipJsonSchema[InstanceOf[PackedRows]] | None = None
    """Packed when read from a JSONL file (``load_sweep_file``) and when a stored sweep is read
    to execute (``parse_stored_spec``)."""
    path: str | None = None

    @field_validator("rows", mode="wrap")
    @classmethod
    def _packed_as_they_are(cls, rows: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Packed rows were checked as they were packed. Validated, pydantic would try them
        as a list too and decode every row into a throwaway list of dicts: the whole dataset
        again, at a large sweep's start."""
        return rows if isinstance(rows, PackedRows) else handler(rows)

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if (self.rows is None) == (self.path is None):
            raise ValueError("give exactly one of rows or path")
        if self.rows is not None and not self.rows:
            raise ValueError("the dataset has no rows")
        if self.rows is not None and len(self.rows) > MAX_ROWS:
            raise ValueError(f"at most {MAX_ROWS} rows")
        return self


class ModelPriceSpec(RequestBody):
    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)


class ProviderSpec(RequestBody):
    """A provider entry; fields beyond these are adapter options (``knowledge`` for mock)."""

    model_config = ConfigDict(extra="allow")

    type: str | None = None
    base_url: str | None = None
    api_key_env: (
        Annotated[
            str,
            Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
            pattern_words(
                "must be an environment variable's name: letters, digits and _, "
                "not starting with a digit"
            ),
        ]
        | None
    ) = None
    credential: CredentialName | None = None
    concurrency: int | None = Field(default=None, ge=1, le=4096)
    rate_limit: float | None = Field(default=None, gt=0, description="requests per minute")
    timeout: float = Field(default=60.0, gt=0, le=3600)
    max_retries: int = Field(default=4, ge=0, le=20)
    prices: dict[str, ModelPriceSpec] = Field(default_factory=dict)
    ca_bundle: str | None = Field(
        default=None,
        max_length=MAX_CA_BUNDLE,
        description="PEM certificates this provider's TLS connections trust instead of the "
        "system's",
    )

    @field_validator("ca_bundle", mode="before")
    @classmethod
    def _inline(cls, value: Any) -> Any:
        if isinstance(value, dict):
            raise ValueError(
                "give the PEM text inline ({file: path} is read by the CLI from a sweep file)"
            )
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _pem(cls, pem: str | None) -> str | None:
        if pem is not None:
            trusted_context(pem)  # a ValueError says why it is not a bundle
        return pem

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^/?#\s]+[^\s]*$", url, re.IGNORECASE):
            raise ValueError("must be an http:// or https:// URL, like http://127.0.0.1:8001/v1")
        return url

    @model_validator(mode="after")
    def _one_key(self) -> ProviderSpec:
        if self.api_key_env is not None and self.credential is not None:
            raise ValueError("give credential or api_key_env, not both")
        return self

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ScorerSpec(RequestBody):
    """A scorer; its options may be nested under ``options`` or written beside the name."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=100)
    type: str = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def all_options(self) -> dict[str, Any]:
        return {**self.options, **(self.model_extra or {})}


MAX_LEDGER_COUNT = 2**31 - 1
"""The most calls or tokens a budget may allow: the spending ledger's columns
(``search_calls``, ``search_tokens``) are 32-bit integers on PostgreSQL, and the ledger is
written up to the limit, so a larger one would fail only once the search runs."""

MAX_SEED = 2**32 - 1
"""The largest search seed: Optuna's sampler seeds NumPy's generator, which takes 0 to
2**32 - 1 and would refuse any other seed only once the search runs."""


class BudgetSpec(RequestBody):
    """Limits an adaptive search stops before crossing; any of them, at least one."""

    calls: int | None = Field(
        default=None, gt=0, le=MAX_LEDGER_COUNT, description="provider calls actually made"
    )
    usd: float | None = Field(default=None, gt=0, description="cost from the providers' prices")
    tokens: int | None = Field(
        default=None, gt=0, le=MAX_LEDGER_COUNT, description="tokens in and out"
    )

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetSpec:
        if self.calls is None and self.usd is None and self.tokens is None:
            raise ValueError("give calls, usd or tokens")
        return self


class SearchSpec(RequestBody):
    strategy: Literal["grid", "random", "racing", "optuna"] = "grid"
    n: int | None = Field(default=None, ge=1)
    seed: int = Field(
        default=0,
        ge=0,
        le=MAX_SEED,
        description="shuffles the rows (racing, Optuna), draws the configs (random) and seeds "
        "Optuna's sampler",
    )
    budget: BudgetSpec | None = None
    alpha: float = Field(default=0.05, gt=0, lt=1, description="racing's significance level")
    first_slice: int = Field(
        default=25, ge=2, description="rows every config runs before the first comparison"
    )
    n_trials: int | None = Field(default=None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _strategy_needs(self) -> SearchSpec:
        if self.strategy == "random" and self.n is None:
            raise ValueError("random search needs n, the number of configs to sample")
        if self.strategy == "optuna" and self.n_trials is None and self.budget is None:
            raise ValueError("optuna search needs n_trials or a budget")
        return self

    @property
    def adaptive(self) -> bool:
        """Whether the search decides what to run as results come in (and so keeps a budget)."""
        return self.strategy in ("racing", "optuna")


class RangeSpec(RequestBody):
    """A numeric parameter Optuna samples from ``low`` to ``high``: an int when both bounds
    are ints, on a log scale with ``log``."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> RangeSpec:
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low above 0")
        return self


def is_range(value: Any) -> bool:
    """Whether a parameter-space entry is a numeric range rather than a list of values."""
    return isinstance(value, dict) and {"low", "high"} <= set(value)


class ScoringConfig(RequestBody):
    weights: dict[str, Annotated[float, Field(ge=0)]]


class SweepSpec(RequestBody):
    name: Name
    description: str = Field(default="", max_length=5000)
    parameter_space: dict[str, Any] = Field(default_factory=dict)
    dataset: DatasetSpec
    pipeline: list[StageSpec] | None = Field(default=None, min_length=1)
    scorers: list[ScorerSpec] = Field(default_factory=list)
    scoring_config: ScoringConfig | None = None
    providers: dict[str, ProviderSpec] = Field(default_factory=dict)
    search: SearchSpec = Field(default_factory=SearchSpec)
    concurrency: int = Field(default=16, ge=1, le=4096)
    cache: bool = True
    repeats: int = Field(default=1, ge=1, le=100)

    @field_validator("parameter_space")
    @classmethod
    def _lists(cls, space: dict[str, Any]) -> dict[str, Any]:
        """A scalar is a one-value list; an empty list would make the grid empty. A name is
        written ``{{ config.NAME }}`` in templates, so it must be an identifier. A range
        (``{low, high}``) stays a mapping, for the searches that sample it."""
        normalised: dict[str, Any] = {}
        for key, values in space.items():
            if not key.isidentifier() or not key.isascii():
                raise ValueError(
                    f"{key!r}: a parameter name is used as {{{{ config.NAME }}}} in templates, "
                    "so it may hold only letters, digits and _, and not start with a digit"
                )
            if is_range(values):
                try:
                    normalised[key] = RangeSpec.model_validate(values).model_dump()
                except ValidationError as exc:
                    raise ValueError(f"{key}: {_validation_message(exc)}") from None
                if all(isinstance(values[b], int) for b in ("low", "high")):
                    normalised[key].update(low=values["low"], high=values["high"])
                continue
            values = values if isinstance(values, list) else [values]
            if not values:
                raise ValueError(f"{key}: an empty list makes the grid empty")
            normalised[key] = values
        return normalised

    @model_validator(mode="after")
    def _search_fits_space(self) -> SweepSpec:
        ranges = [key for key, values in self.parameter_space.items() if isinstance(values, dict)]
        if ranges and self.search.strategy != "optuna":
            raise ValueError(
                f"parameter_space.{ranges[0]}: a range needs search: {{strategy: optuna}} "
                "(the other strategies take lists of values)"
            )
        if self.search.adaptive and not self.scorers:
            raise ValueError(
                f"scorers: a {self.search.strategy} search compares configs by their scores; "
                "give at least one scorer"
            )
        if self.search.strategy == "racing":
            size = 1
            for values in self.parameter_space.values():
                size *= len(values)
            if size < 2:
                raise ValueError("search.strategy: racing compares configs; the space has one")
        return self


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    message = problem_message(first)
    extra = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if not first["loc"]:  # a check across fields names the field in its message
        return f"{message}{extra}"
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {message}{extra}"


def stored_document(spec: SweepSpec) -> dict[str, Any]:
    """The sweep as an experiment stores it (JSON). The dataset's rows are shared with
    ``spec`` when they are JSON as they stand, as rows from CSV or a request are, rather than
    copied: for a large dataset a copy would double what creating the experiment holds. Packed
    rows (a JSONL file's) are decoded only here, for as long as the insert needs them."""
    document = spec.model_dump(mode="json", exclude_none=True, exclude={"dataset": {"rows"}})
    rows = spec.dataset.rows
    if isinstance(rows, PackedRows):  # JSON read back: plain by construction
        document["dataset"]["rows"] = list(rows)
    elif rows is not None:
        plain = all(map(_plain_json, rows))
        document["dataset"]["rows"] = (
            rows if plain else spec.dataset.model_dump(mode="json", include={"rows"})["rows"]
        )
    return document


def _plain_json(value: Any) -> bool:
    """Whether ``value`` is stored as JSON unchanged: strings, finite numbers, booleans, null,
    and lists and string-keyed objects of them (not a YAML date, a tuple or NaN)."""
    if isinstance(value, str | int | bool) or value is None:
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(map(_plain_json, value))
    if isinstance(value, dict):
        return all(isinstance(key, str) and _plain_json(found) for key, found in value.items())
    return False


def parse_spec(document: Any) -> SweepSpec:
    """Validate a sweep document's shape; ``Invalid`` names the first bad field."""
    if not isinstance(document, dict):
        raise Invalid("a sweep document must be a mapping (YAML or JSON object)")
    try:
        return SweepSpec.model_validate(document)
    except ValidationError as exc:
        raise Invalid(_validation_message(exc)) from exc


def parse_stored_spec(document: dict[str, Any]) -> SweepSpec:
    """An experiment's stored sweep, to execute it: its dataset rows are packed
    (``PackedRows``) instead of validated into a second copy of dicts. They were validated
    when the experiment was created and come back from the database as JSON; packed, they are
    all the executing process keeps of them once the stored document is let go."""
    dataset = document.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("rows"), list):
        document = {**document, "dataset": {**dataset, "rows": PackedRows(dataset["rows"])}}
    return parse_spec(document)


def reject_file_references(document: dict[str, Any]) -> None:
    """The API stores self-contained documents: files are read on the caller's side."""
    dataset = document.get("dataset")
    if isinstance(dataset, dict) and dataset.get("path") is not None:
        raise Invalid("dataset.path: files are read by the CLI; send the rows inline")
    for key, values in (document.get("parameter_space") or {}).items():
        for index, value in enumerate(values if isinstance(values, list) else [values]):
            if isinstance(value, dict) and "file" in value:
                raise Invalid(
                    f"parameter_space.{key}[{index}]: files are read by the CLI; "
                    "send the template inline"
                )


# ---------------------------------------------------------------------------------------------
# Files


def _read_text(base: Path, ref: Any, where: str) -> str:
    if not isinstance(ref, str) or not ref:
        raise Invalid(f"{where}: file must be a path")
    return read_text((base / ref).expanduser(), where)


def _read_rows(path: Path) -> list[dict[str, Any]] | PackedRows:
    """A JSONL file's rows are checked and packed line by line as they are read: a large
    dataset never exists as a list of dicts, which would take ~9× the packed size and leave
    the process's memory fragmented after it is freed."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return PackedRows(_jsonl_rows(path))
    text = read_text(path, "dataset.path")
    try:
        if suffix == ".csv":
            return [dict(row) for row in csv.DictReader(text.splitlines())]
        if suffix == ".json":
            data = json.loads(text)
            return data if isinstance(data, list) else data.get("rows", [])
    except (ValueError, csv.Error) as exc:
        raise Invalid(f"dataset.path: {path.name}: {exc}") from exc
    raise Invalid(f"dataset.path: {path.name}: use a .csv, .jsonl or .json file")


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(read_lines(path, "dataset.path"), start=1):
        if line.strip():
            try:
                row = json.loads(line, parse_constant=_not_finite)
            except ValueError as exc:
                raise Invalid(f"dataset.path: {path.name} line {number}: {exc}") from exc
            if not isinstance(row, dict):
                raise Invalid(_NOT_AN_OBJECT)
            yield row


_NOT_AN_OBJECT = "dataset.path: every row must be an object"


def _not_finite(name: str) -> float:
    """Rows are validated here, not by the spec's model, which refuses a non-finite number."""
    raise ValueError(f"{name} is not a finite number")


def _inline_file(base: Path, value: Any, where: str) -> Any:
    """A ``{file: PATH}`` value becomes the file's text; any other value is kept as written."""
    if isinstance(value, dict) and set(value) == {"file"}:
        return _read_text(base, value["file"], where)
    return value


def resolve_files(document: dict[str, Any], base: Path) -> dict[str, Any]:
    """Inline ``{file: ...}`` templates, CA bundles and the dataset file, relative to
    ``base``."""
    document = dict(document)
    space = document.get("parameter_space")
    if isinstance(space, dict):
        resolved: dict[str, Any] = {}
        for key, values in space.items():
            if isinstance(values, list):
                resolved[key] = [
                    _inline_file(base, value, f"parameter_space.{key}[{i}].file")
                    for i, value in enumerate(values)
                ]
            else:  # one value, or a range that only a search samples: never wrapped here
                resolved[key] = _inline_file(base, values, f"parameter_space.{key}.file")
        document["parameter_space"] = resolved
    stages = document.get("pipeline")
    if isinstance(stages, list):
        document["pipeline"] = [
            {
                **stage,
                **{
                    field: _read_text(base, stage[field]["file"], f"pipeline[{i}].{field}.file")
                    for field in ("prompt_template", "system")
                    if isinstance(stage, dict) and isinstance(stage.get(field), dict)
                },
            }
            if isinstance(stage, dict)
            else stage
            for i, stage in enumerate(stages)
        ]
    providers = document.get("providers")
    if isinstance(providers, dict):
        document["providers"] = resolved_providers = dict(providers)
        for name, entry in providers.items():
            bundle = entry.get("ca_bundle") if isinstance(entry, dict) else None
            if isinstance(bundle, dict) and set(bundle) == {"file"}:
                where = f"providers.{name}.ca_bundle.file"
                resolved_providers[name] = {
                    **entry,
                    "ca_bundle": _read_text(base, bundle["file"], where),
                }
    dataset = document.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("path"), str):
        rows = _read_rows((base / dataset["path"]).expanduser())
        if not isinstance(rows, PackedRows) and not all(isinstance(row, dict) for row in rows):
            raise Invalid(_NOT_AN_OBJECT)
        document["dataset"] = {"rows": rows}
    return document


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it: the same documents, read ~8× faster
(inline datasets make sweep files long)."""


def load_sweep_file(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON sweep file and inline what it refers to."""
    text = read_text(path)
    try:
        document = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise Invalid(f"{path.name}{where}: not valid YAML/JSON: {problem}") from exc
    if not isinstance(document, dict):
        raise Invalid(f"{path.name}: a sweep file must be a mapping")
    return resolve_files(document, path.parent)
