"""Request and response bodies for online experiments, as the seed's contract shapes them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from promptlooper.errors import FORM_WORDS
from promptlooper.types import RequestBody, pattern_words
from promptlooper.values import MAX_AMOUNT

SLUG = r"^[a-z0-9]+([_-][a-z0-9]+)*$"
SLUG_WORDS = pattern_words(
    "must be lowercase letters and digits, words joined by - or _ (like checkout-button)"
)
Key = Annotated[str, StringConstraints(pattern=SLUG, min_length=1, max_length=100), SLUG_WORDS]
MetricName = Annotated[
    str, StringConstraints(pattern=SLUG, min_length=1, max_length=50), SLUG_WORDS
]
"""A metric's or event's name, as events carry it in ``event_name``."""
CookieName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100),
    pattern_words("must be letters, digits, _ . or - only (like exp_checkout)"),
]
Status = Literal["draft", "running", "stopped"]
EVENT_TYPES = ("impression", "cta_click", "form_start", "form_submit", "conversion")
MAX_METADATA_BYTES = 4096
MAX_BATCH = 1000


class VariantDefinition(RequestBody):
    variant_key: Key
    label: Annotated[str, StringConstraints(max_length=200)] = ""
    allocation: float = Field(
        gt=0, le=100, description="Percent of covered traffic, above 0, at most 2 decimals"
    )
    is_control: bool = False
    agent_variant_id: uuid.UUID | None = Field(
        default=None, description="The agent variant this arm serves (for ?unit_id= resolution)"
    )

    @field_validator("allocation")
    @classmethod
    def _allocation(cls, allocation: float) -> float:
        """A split is written in hundredths of a percent at most: an arm of 0.0000001 % is a
        typing slip that would leave it without a single unit, and never a design."""
        rounded = round(allocation, 2)
        if rounded != allocation:
            # Its own value rounded (never below the smallest arm there is), so the example
            # fits the split that was meant: 33.333/66.667 → 33.33/66.67.
            raise ValueError(
                f"allocation {allocation} has more than 2 decimals; use e.g. {max(rounded, 0.01)}"
            )
        return allocation


MAX_RELATIVE = 10.0
"""The largest relative change (1000 %) a guardrail threshold or a lift to plan for may be:
a larger one is a slip (20 typed for +20 %), not an effect anyone means."""


class GuardrailThreshold(RequestBody):
    """How far an arm may move a guardrail metric the wrong way against control: a lower-is-
    better metric (cost) gets a positive threshold (``0.2``: may not rise by more than 20 %),
    a higher-is-better one (success rate) a negative one (``-0.02`` on the ``absolute`` scale:
    may not fall by more than 2 points)."""

    threshold: float = Field(
        strict=True, allow_inf_nan=False, description="Signed, in the harmful direction"
    )
    scale: Literal["relative", "absolute"] = "relative"

    @field_validator("threshold")
    @classmethod
    def _nonzero(cls, threshold: float) -> float:
        if threshold == 0:
            raise ValueError("a threshold of 0 would stop an arm for any harm; give a margin")
        return threshold


class BanditSchedule(RequestBody):
    """When a bandit's weights are recomputed (whichever comes first, once there is new
    data), and the least share of traffic any arm keeps."""

    every_exposures: int = Field(default=1000, ge=1, le=10_000_000)
    every_seconds: float = Field(default=3600.0, ge=1, le=30 * 86400)
    floor: float = Field(default=0.05, ge=0, lt=0.5, description="Least weight of any arm")


def _refused(field: str, words: str, *, form: str) -> PydanticCustomError:
    """A check of the whole definition, naming ``field`` first as those checks do: ``words``
    name other fields as the API and definition files call them, ``form`` says the same in
    the terms of the web form, which shows labels and boxes, not field names."""
    return PydanticCustomError("value_error", f"{field}: {words}", {FORM_WORDS: f"{field}: {form}"})


def _check_reachable(field: str, rule: GuardrailThreshold) -> None:
    """A threshold no arm could reach would guard nothing while looking like a guardrail; the
    bounds are those of what it is compared with, a relative change or an amount. Checked
    with the whole definition, so the problem names the threshold itself."""
    if rule.scale == "relative" and abs(rule.threshold) > MAX_RELATIVE:
        raise ValueError(
            f"{field}: a relative threshold is at most {MAX_RELATIVE:g} "
            f"({MAX_RELATIVE * 100:g} %) either way, not {rule.threshold:g}; 0.2 is 20 %"
        )
    if abs(rule.threshold) > MAX_AMOUNT:
        raise ValueError(
            f"{field}: an absolute threshold is at most {MAX_AMOUNT:.0e} either way (the "
            f"largest amount an event carries), not {rule.threshold:g}"
        )


class ExperimentDefinition(RequestBody):
    """The full definition, as ``PUT /api/admin/experiments/{key}`` replaces it."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: Annotated[str, StringConstraints(max_length=5000)] = ""
    cookie_name: CookieName
    enabled: bool = True
    status: Status = "running"
    eligible_routes: list[Annotated[str, StringConstraints(max_length=500)]] = Field(
        default_factory=list, description="Exact paths, or prefixes written /blog/*; empty: all"
    )
    coverage: float = Field(default=100.0, ge=0, le=100, description="Percent of traffic")
    hash_seed: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None, description="Default: the experiment key; changing it re-randomises"
    )
    primary_metric: MetricName = Field(
        default="conversion", description="A defined metric's name, or a built-in event type"
    )
    secondary_metrics: list[MetricName] = Field(default_factory=list, max_length=20)
    guardrail_metrics: list[MetricName] = Field(default_factory=list, max_length=20)
    variants: list[VariantDefinition] = Field(min_length=2, max_length=20)
    type: Literal["ab", "bandit"] = Field(
        default="ab", description="bandit: Thompson sampling moves traffic to the best arm"
    )
    auto_stop: bool = Field(
        default=False,
        strict=True,
        description="Stop an arm that is significantly past a guardrail (needs its threshold)",
    )
    guardrail_thresholds: dict[MetricName, GuardrailThreshold] = Field(
        default_factory=dict, description="Per guardrail metric (a defined one)"
    )
    bandit: BanditSchedule | None = Field(
        default=None, description="A bandit's schedule (defaults when left out)"
    )

    @field_validator("secondary_metrics", "guardrail_metrics")
    @classmethod
    def _once(cls, names: list[str]) -> list[str]:
        """A metric listed twice would be stored, tested and counted in the multiple-testing
        correction twice."""
        if twice := next((name for name in names if names.count(name) > 1), None):
            raise ValueError(f"{twice!r} is listed twice")
        return names

    @field_validator("eligible_routes")
    @classmethod
    def _routes(cls, routes: list[str]) -> list[str]:
        for route in routes:
            if not route.startswith("/"):
                raise ValueError(f"route {route!r} must start with /")
            if "*" in route[:-1] or (route.endswith("*") and not route.endswith("/*")):
                raise ValueError(f"route {route!r}: only a trailing /* is a pattern")
        return routes

    _sent: list[str] = PrivateAttr(default_factory=list)

    def sent_index(self, variant_key: str) -> int:
        """Where the caller put an arm in ``variants``: the control is moved first, but a
        problem about an arm points at the arm the caller wrote (``variants.2.allocation``)."""
        keys = self._sent or [v.variant_key for v in self.variants]
        return keys.index(variant_key)

    @model_validator(mode="after")
    def _variants(self) -> ExperimentDefinition:
        keys = [v.variant_key for v in self.variants]
        # At the second use, as sent: the first arm with that key is where it belongs.
        second = next((i for i, key in enumerate(keys) if key in keys[:i]), None)
        if second is not None:
            raise _refused(
                f"variants.{second}.variant_key",
                f"{keys[second]!r} is used twice; give each arm its own key",
                form=f"the variant key {keys[second]!r} is used twice",
            )
        controls = [v for v in self.variants if v.is_control]
        if len(controls) != 1:
            raise ValueError(f"variants: exactly one control is needed, found {len(controls)}")
        total = sum(v.allocation for v in self.variants)
        if abs(total - 100) > 1e-6:
            raise ValueError(f"variants: allocations must sum to 100, not {total:g}")
        # Control first, the rest in the order given.
        self._sent = keys
        self.variants = controls + [v for v in self.variants if not v.is_control]
        for name, rule in self.guardrail_thresholds.items():
            if name not in self.guardrail_metrics:
                raise _refused(
                    f"guardrail_thresholds.{name}",
                    "not one of guardrail_metrics; add it there",
                    form=f"{name} has a threshold but is not a guardrail; tick its guardrail box, "
                    "or clear the threshold",
                )
            _check_reachable(f"guardrail_thresholds.{name}.threshold", rule)
        if self.auto_stop and not self.guardrail_thresholds:
            raise _refused(
                "auto_stop",
                "there is nothing to stop an arm on; give guardrail_thresholds for the "
                "guardrail metrics, or leave auto_stop off",
                form="there is nothing to stop an arm on; give a threshold for a guardrail "
                "metric, or leave auto-stop off",
            )
        if self.type == "bandit":
            if "primary_metric" not in self.model_fields_set:
                raise ValueError("primary_metric: a bandit needs the metric it optimises")
            self.bandit = self.bandit or BanditSchedule()
        elif self.bandit is not None:
            raise ValueError("bandit: only an experiment of type bandit has a schedule")
        return self


class ExperimentCreate(ExperimentDefinition):
    experiment_key: Key


READ_ONLY = ("experiment_key", "id", "archived_at", "created_at")
"""Fields a ``GET`` returns that a ``PUT`` may send back unchanged (``updated_at`` too, and it
is ignored: it moves with every write)."""


class ExperimentUpdate(ExperimentDefinition):
    """A definition, or a ``GET``'s answer (or ``online create``'s file) edited and sent back:
    the read-only fields are accepted when they match the experiment, and ignored."""

    experiment_key: str | None = None
    id: uuid.UUID | None = None
    archived_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    stopped_arms: list[str] | None = Field(default=None, description="State: ignored")
    weights: list[float] | None = Field(default=None, description="State: ignored")


class ExperimentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    experiment_key: str
    name: str
    description: str
    cookie_name: str
    enabled: bool
    status: str
    eligible_routes: list[str]
    coverage: float
    hash_seed: str
    primary_metric: str
    secondary_metrics: list[str]
    guardrail_metrics: list[str]
    variants: list[dict[str, Any]]
    type: str = "ab"
    auto_stop: bool = False
    guardrail_thresholds: dict[str, Any] = Field(default_factory=dict)
    bandit: dict[str, Any] | None = None
    stopped_arms: list[str] = Field(
        default_factory=list,
        description="Arms a guardrail stopped: their units are served the control (why: in "
        "the results)",
    )
    weights: list[float] | None = Field(
        default=None, description="A bandit's weights in force, in the order of variants"
    )

    @field_validator("stopped_arms", mode="before")
    @classmethod
    def _arm_keys(cls, stopped: Any) -> Any:
        """Only which arms are stopped: the numbers behind a stop are the results', which
        only admins read."""
        return sorted(stopped) if isinstance(stopped, dict) else stopped


class ExperimentAdmin(ExperimentPublic):
    id: uuid.UUID
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ExperimentAdminList(BaseModel):
    data: list[ExperimentAdmin]
    count: int


class SettingsBody(RequestBody):
    site_name: Annotated[str, StringConstraints(max_length=200)] = ""
    experiments_enabled: bool = True


class Assignment(BaseModel):
    experiment_key: str
    variant_key: str | None = Field(description="null: not in the experiment")


class EventIn(RequestBody):
    """One browser event. An unknown field is a 422, as everywhere in the API: a misspelt
    ``value`` dropped silently would lose a conversion's amount without a word."""

    experiment_key: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    variant_key: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    session_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    path: Annotated[str, StringConstraints(max_length=2000)] = ""
    event_name: Annotated[str, StringConstraints(min_length=1, max_length=50)] | None = None
    timestamp: AwareDatetime | None = None
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        default=None, description="Idempotency key: a retry with the same id is not counted twice"
    )
    value: float | None = Field(
        default=None,
        validation_alias=AliasChoices("value", "conversion_value"),
        allow_inf_nan=False,
        ge=-MAX_AMOUNT,
        le=MAX_AMOUNT,
        description="A conversion's value (a finite number, at most 1e15 either way); "
        "`conversion_value`, the name the results use, is accepted in its place",
    )
    metadata: dict[str, Any] | None = None


class Accepted(BaseModel):
    ok: bool = True
    accepted: bool


class BatchIn(RequestBody):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class BatchItem(BaseModel):
    accepted: bool
    reason: str | None = None


class BatchOut(BaseModel):
    ok: bool = True
    accepted: int
    rejected: int
    results: list[BatchItem]


class VariantResult(BaseModel):
    variant_key: str
    impressions: int
    cta_clicks: int
    form_starts: int
    form_submits: int
    conversions: int
    unique_sessions: int
    conversion_rate: float
    conversion_value_total: float
    stats: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="Treatments only: per metric, lift against control with frequentist, "
        "sequential and Bayesian results",
    )
    metrics: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="Treatments only: per defined metric the experiment names (primary, "
        "secondary, guardrails), its role and direction and the same statistics",
    )

    offline: dict[str, Any] | None = Field(
        default=None,
        description="Arms serving an agent variant promoted from a sweep: the sweep, the "
        "variant's score there and, for treatments, the lift those scores predict against "
        "control beside the lift observed on the primary metric",
    )

    @model_serializer(mode="wrap")
    def _control_has_no_stats(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for field in ("stats", "metrics", "offline"):
            if data.get(field) is None:
                data.pop(field, None)
        return data


class ExperimentResults(BaseModel):
    experiment_key: str
    variants: list[VariantResult]
    health: dict[str, Any] = Field(
        default_factory=dict,
        description="Sample-ratio mismatch, rejected events by reason, multiple exposure, "
        "and whether every arm has the minimum sample",
    )
    multiplicity: dict[str, Any] = Field(
        default_factory=dict,
        description="The family every p_value_adjusted is adjusted in: tests (the valid "
        "comparisons, those without an error), comparisons (all treatment × metric pairs) "
        "and the correction; with one test, its adjusted p-value is its own",
    )
    guardrails: dict[str, Any] = Field(
        default_factory=dict,
        description="auto_stop, thresholds, the arms stopped (metric, numbers, time), the "
        "arms still served that are past a threshold (breaching: resumed by hand, or without "
        "auto_stop) and the audit trail of stops and resumes",
    )
    traffic: dict[str, Any] = Field(
        default_factory=dict,
        description="The shares of traffic in force, a bandit's weights, and their history",
    )


Aggregation = Literal["proportion", "mean", "ratio"]
PERFORMANCE_FIELDS = (
    "cost",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "success",
    "quality",
    "calls",
)
"""What a performance metric can measure per call (``calls`` counts them)."""
CUPED_WINDOW_DAYS = 14
"""A CUPED metric's pre-exposure window unless it names one (GrowthBook's lookback)."""
MAX_CUPED_WINDOW_DAYS = 365


class RatioSide(RequestBody):
    """A cross-source ratio's denominator: a source of either kind. Per unit it counts the
    events of that name (from the unit's first impression on) or sums the performance field
    (``calls``: the number of calls)."""

    kind: Literal["event", "performance"]
    source: MetricName


_SOURCE_NAME: TypeAdapter[str] = TypeAdapter(MetricName)
_RATIO_SIDE: TypeAdapter[RatioSide] = TypeAdapter(RatioSide)


def _one_denominator(value: Any, _handler: Any, info: ValidationInfo) -> str | RatioSide:
    """A denominator read as what it is: a name checked as a name, an object as ``{kind,
    source}``. Checked as the union it is declared as, a bad one would be refused by both
    readings, each under the internal name of its schema."""
    if isinstance(value, str):
        return _SOURCE_NAME.validate_python(value, context=info.context)
    if isinstance(value, dict | RatioSide):
        return _RATIO_SIDE.validate_python(value, context=info.context)
    raise PydanticCustomError(
        "denominator_type",
        "a ratio's denominator is a source's name, or "
        '{"kind": "event" or "performance", "source": ...}',
    )


Denominator = Annotated[MetricName | RatioSide, WrapValidator(_one_denominator)]


class MetricCreate(RequestBody):
    """A metric experiments can name. ``source`` is the event name measured (a built-in one or
    your own, which ingestion then accepts) or, with ``kind: performance``, a field of the
    agent performance log, per call; per exposed unit (for performance metrics: per unit
    served), counting its events from its first impression on, ``proportion`` is whether it
    sent the event (had a call with a non-zero value), ``mean`` the sum of the values (an
    event without a value counts 1), and ``ratio``
    Σ values / Σ events or calls over the units (value per event, cost per call), with
    ``denominator`` naming the same source, or another source as ``{"kind", "source"}``
    (cost per conversion: Σ cost / Σ conversions over the units exposed or served).
    ``cuped: true`` adjusts a mean metric of browser
    events by the same metric before each unit's first exposure (CUPED): a unit's events sent
    under its arm in the ``cuped_window_days`` (default 14) before its first impression are
    its covariate."""

    name: MetricName
    kind: Literal["event", "performance"] = "event"
    source: MetricName
    aggregation: Aggregation
    denominator: Denominator | None = Field(
        default=None,
        description="A ratio's denominator: its own source's name (per event, per call), or "
        "another source as {kind, source} (cost per conversion)",
    )
    denominator_kind: Literal["event", "performance"] | None = Field(
        default=None,
        description="With a denominator given by name, as a metric is read back: its kind "
        '(the same as {"kind", "source"})',
    )
    direction: Literal["higher", "lower"] = "higher"
    description: Annotated[str, StringConstraints(max_length=5000)] = ""
    project_id: uuid.UUID | None = Field(default=None, description="null: a site-wide metric")
    cuped: bool = Field(
        default=False,
        description="Mean metrics of browser events: adjust by the same metric before exposure",
    )
    cuped_window_days: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=MAX_CUPED_WINDOW_DAYS,
        description="CUPED's pre-exposure window in days (default 14): only a unit's events in "
        "that many days before its first exposure are its covariate",
    )

    @model_validator(mode="after")
    def _denominator(self) -> MetricCreate:
        if self.denominator_kind is not None:  # a metric as read back: the side by its parts
            side = self.denominator
            if side is None:
                raise ValueError("denominator_kind: there is no denominator to be of that kind")
            if isinstance(side, RatioSide) and side.kind != self.denominator_kind:
                raise ValueError(
                    f"denominator_kind: {self.denominator_kind!r} contradicts the "
                    f"denominator's kind {side.kind!r}"
                )
            if isinstance(side, str):
                self.denominator = RatioSide(kind=self.denominator_kind, source=side)
            self.denominator_kind = None  # ``stored`` gives the kind of a cross-source side
        if self.cuped_window_days is not None and not self.cuped:
            raise ValueError(
                "cuped_window_days: only a CUPED metric has a pre-exposure window; "
                "set cuped: true or leave the window out"
            )
        if self.cuped and self.cuped_window_days is None:
            self.cuped_window_days = CUPED_WINDOW_DAYS
        if self.cuped and self.aggregation != "mean":
            raise ValueError(
                f"cuped: only a mean metric has a pre-exposure covariate, not a {self.aggregation}"
            )
        if self.cuped and self.kind == "performance":
            raise ValueError(
                "cuped: a performance metric's units are exposed by their first call and have "
                "no pre-exposure calls; use it on a mean of browser events"
            )
        if self.kind == "performance" and self.source not in PERFORMANCE_FIELDS:
            raise ValueError(
                f"source: a performance metric measures one of {', '.join(PERFORMANCE_FIELDS)}"
            )
        if self.aggregation == "ratio" and self.denominator is None:
            raise ValueError("denominator: a ratio metric needs one")
        if self.aggregation != "ratio" and self.denominator is not None:
            raise ValueError(f"denominator: only a ratio has one, not a {self.aggregation}")
        side = self.denominator
        if isinstance(side, RatioSide):
            if side.kind == "performance" and side.source not in PERFORMANCE_FIELDS:
                raise ValueError(
                    "denominator.source: a performance denominator is one of "
                    + ", ".join(PERFORMANCE_FIELDS)
                )
            if (side.kind, side.source) == (self.kind, self.source):
                self.denominator = side.source  # the same source: the plain ratio
        elif side is not None and side != self.source:
            own = (
                f"{self.source!r} events' values by their number"
                if self.kind == "event"
                else f"the calls' {self.source!r} by the number of calls that gave it"
            )
            raise ValueError(
                f"denominator: a ratio divides {own}; set it to {self.source!r}, or name "
                'another source as {"kind": "event" or "performance", "source": ...}'
            )
        return self

    def stored(self) -> dict[str, Any]:
        """The definition's columns: a cross-source denominator as its source and kind."""
        row = self.model_dump()
        side = self.denominator
        if isinstance(side, RatioSide):
            row |= {"denominator": side.source, "denominator_kind": side.kind}
        return row


class MetricPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    kind: str
    source: str
    aggregation: str
    denominator: str | None
    denominator_kind: str | None = Field(
        description="null: the denominator is the metric's own source; event or performance: "
        "a cross-source ratio's denominator kind"
    )
    direction: str
    description: str
    project_id: uuid.UUID | None
    cuped: bool
    cuped_window_days: int | None
    created_at: datetime


class MetricList(BaseModel):
    data: list[MetricPublic]
    count: int
