"""From a validated sweep document to an executable plan, checking everything on the way.

``compile_plan`` is where a sweep is judged before anything runs: unknown providers and
scorers, template syntax, undefined template variables (per row), an empty grid, bad weights
and oversized sweeps all fail here with a message that names the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptlooper.errors import Invalid
from promptlooper.sweeps.adapters.base import ProviderConfig
from promptlooper.sweeps.adapters.registry import parse_model_ref
from promptlooper.sweeps.engine.budget import split_params
from promptlooper.sweeps.engine.runner import (
    StageDef,
    score_context,
    stage_context,
    template_context,
)
from promptlooper.sweeps.engine.space import Config, select_configs, space_size
from promptlooper.sweeps.engine.templating import (
    GLOBAL_NAMES,
    TemplateError,
    TemplateLimitError,
    check_syntax,
    is_template,
    referenced_attributes,
    referenced_names,
    render_value,
)
from promptlooper.sweeps.providers import ProviderAccess, provider_configs
from promptlooper.sweeps.scorers.base import BaseScorer, ScorerContext
from promptlooper.sweeps.scorers.registry import create_scorer, scorer_class
from promptlooper.sweeps.spec import StageSpec, SweepSpec
from promptlooper.training.layout import parse_checkpoint_ref
from promptlooper.training.registry import load_registry

RUNTIME_NAMES = frozenset({"input", "row", "config", "stages", "prev_output", "stage_index"})
SINGLE_STAGE_KEYS = ("prompt", "model", "system")


def _implicit_stage(space: Mapping[str, list[Any]]) -> StageSpec:
    """Without a pipeline: one stage from ``prompt``/``model``/``system``, the rest params."""
    missing = [key for key in ("prompt", "model") if key not in space]
    if missing:
        raise Invalid(
            f"parameter_space.{missing[0]}: needed when there is no pipeline "
            "(or give a pipeline of stages)"
        )
    return StageSpec(
        prompt_template="{{ config.prompt }}",
        model="{{ config.model }}",
        system="{{ config.system }}" if "system" in space else None,
        params={k: f"{{{{ config.{k} }}}}" for k in space if k not in SINGLE_STAGE_KEYS},
    )


def _config_only(value: Any) -> bool:
    """Whether every template inside ``value`` reads nothing but ``config``."""
    if isinstance(value, dict):
        return all(_config_only(v) for v in value.values())
    if isinstance(value, list):
        return all(_config_only(v) for v in value)
    return not is_template(value) or referenced_names(value) <= {"config"}


@dataclass
class SweepPlan:
    spec: SweepSpec
    configs: list[Config]
    stages: list[StageSpec]
    rows: Sequence[dict[str, Any]]
    """A list, or packed rows (``PackedRows``) when a stored sweep executes: each index reads
    a fresh dict."""
    providers: dict[str, ProviderConfig]
    weights: dict[str, float]
    allow_python: bool

    @property
    def is_pipeline(self) -> bool:
        return self.spec.pipeline is not None

    @property
    def total_runs(self) -> int:
        """The runs of every config; an Optuna search's configs are its trials, and without a
        number of trials, as many runs as its budget has calls (one trial's if it has none)."""
        per_config = len(self.rows) * self.spec.repeats
        search = self.spec.search
        if search.strategy != "optuna":
            return len(self.configs) * per_config
        if search.n_trials is not None:
            return search.n_trials * per_config
        calls = search.budget.calls if search.budget is not None else None
        return calls or per_config

    def stages_for(self, config: Config) -> list[StageDef]:
        """The stages with ``config``'s values in place; prompts stay per-row templates."""
        context = {"config": config}
        resolved = []
        for stage in self.stages:

            def value(field: Any, ctx: dict[str, Any] = context) -> Any:
                return render_value(field, ctx) if _config_only(field) else field

            resolved.append(
                StageDef(
                    prompt_template=str(value(stage.prompt_template)),
                    model=str(value(stage.model)),
                    params=value(stage.params),
                    system=None if stage.system is None else value(stage.system),
                    name=stage.name,
                )
            )
        return resolved

    def model_refs(self) -> dict[str, str]:
        """Every ``provider:model`` the sweep will call, with the field it is first named in."""
        refs: dict[str, str] = {}
        for config in self.configs:
            for index, stage in enumerate(self.stages_for(config)):
                refs.setdefault(stage.model, _where(self, index, "model"))
        for index, scorer in enumerate(self.spec.scorers):
            if scorer.type == "llm_judge":
                refs.setdefault(scorer.all_options["model"], f"scorers[{index}].model")
        return refs

    def run_config(
        self, config: Config, row: Mapping[str, Any], stages: list[StageDef] | None = None
    ) -> dict[str, Any]:
        """The executable config stored on a run, in the seed's two shapes."""
        stages = self.stages_for(config) if stages is None else stages
        if self.is_pipeline:
            return {
                "pipeline_stages": [
                    {
                        "prompt_template": s.prompt_template,
                        "model": s.model,
                        "params": s.params,
                        "system": s.system,
                        "name": s.name,
                    }
                    for s in stages
                ],
                "input_data": dict(row),
            }
        (stage,) = stages
        return {
            "prompt": stage.prompt_template,
            "model": stage.model,
            "params": stage.params,
            "system": stage.system,
            "input_data": dict(row),
        }

    def build_scorers(self, context: ScorerContext) -> list[BaseScorer]:
        return [create_scorer(s.type, s.name, s.all_options, context) for s in self.spec.scorers]


def _check_model(ref: Any, where: str, providers: Mapping[str, ProviderConfig]) -> None:
    if not isinstance(ref, str):
        raise Invalid(f"{where}: a model must be a string provider:model, got {ref!r}")
    try:
        provider, _ = parse_model_ref(ref)
    except Invalid as exc:
        raise Invalid(f"{where}: {exc.message}") from exc
    if provider not in providers:
        raise Invalid(
            f"{where}: unknown provider {provider!r} in {ref!r}; configure it "
            f"under providers, or use one of: {', '.join(sorted(providers))}"
        )
    if providers[provider].type == "local":
        _check_local_model(ref, where, providers[provider])


def _check_local_model(ref: str, where: str, provider: ProviderConfig) -> None:
    """A ``local`` model is a name in the registry the provider reads, or a training run's
    checkpoint (which the service checks: it can see the runs). Judged here so that a typo
    fails the sweep's creation rather than each of its runs."""
    _, model = parse_model_ref(ref)
    try:
        if parse_checkpoint_ref(model) is not None:
            return
    except Invalid as exc:
        raise Invalid(f"{where}: {exc.message}") from exc
    names = load_registry(provider.options.get("models_file")).names()
    if model not in names:
        listed = ", ".join(names)
        raise Invalid(f"{where}: {ref!r} is not a local model; the registry has: {listed}")


def _check_template(
    source: Any, where: str, space: Mapping[str, Any], rows: Sequence[dict[str, Any]]
) -> None:
    if not isinstance(source, str):
        raise Invalid(f"{where}: a prompt template must be text, got {source!r}")
    try:
        check_syntax(source)
        names = referenced_names(source)
        config_keys = referenced_attributes(source, "config")
    except TemplateError as exc:
        raise Invalid(f"{where}: {exc.message}") from exc
    for key in sorted(config_keys - set(space)):
        raise Invalid(f"{where}: config.{key} is not a parameter of the parameter_space")
    for name in sorted(names - RUNTIME_NAMES - GLOBAL_NAMES):
        if name == "expected":
            raise Invalid(f"{where}: `expected` is kept from prompts (it is for scorers)")
        missing = next((i for i, row in enumerate(rows) if name not in row), None)
        if missing is not None:
            raise Invalid(
                f"{where}: undefined template variable {name!r} "
                f"(dataset row {missing} has no field {name!r})"
            )


def _where(plan: SweepPlan, index: int, field: str) -> str:
    """Where a stage field came from, as the user wrote it."""
    if plan.is_pipeline:
        return f"pipeline[{index}].{field}"
    return "parameter_space." + {"prompt_template": "prompt"}.get(field, field)


def _check_stages(plan: SweepPlan, space: Mapping[str, list[Any]]) -> None:
    for index, stage in enumerate(plan.stages):
        for field in ("model", "params"):
            value = getattr(stage, field)
            if not _config_only(value):
                raise Invalid(f"{_where(plan, index, field)}: may use config values only")
            for source in _templates_in(value):
                where = _where(plan, index, field)
                _check_template(source, where, space, plan.rows)
                context = {"config": plan.configs[0]}
                _within_limits(lambda s=source, c=context: render_value(s, c), where)
    checked: set[tuple[int, str, str]] = set()
    for config in plan.configs:
        stages = plan.stages_for(config)
        base = template_context(plan.rows[0], config)
        for index, stage in enumerate(stages):
            _check_model(stage.model, _where(plan, index, "model"), plan.providers)
            _check_budget(stage.params, plan, index)
            for field in ("prompt_template", "system"):
                source = getattr(stage, field)
                if source is None or (index, field, str(source)) in checked:
                    continue
                checked.add((index, field, str(source)))
                where = _where(plan, index, field)
                _check_template(source, where, space, plan.rows)
                context = stage_context(base, _empty_views(stages[:index]), "", index)
                _within_limits(lambda s=source, c=context: render_value(s, c), where)


def _empty_views(stages: list[StageDef]) -> list[dict[str, Any]]:
    """Earlier stages as a template sees them, before anything ran."""
    return [{"output": "", "prompt": "", "model": stage.model} for stage in stages]


def _within_limits(render: Callable[[], Any], where: str) -> None:
    """Render a template once, for the first dataset row with earlier outputs empty. One that
    goes past the sandbox's limits there would fail its runs, most often all of them alike, so
    it is refused now; any other error may depend on the row, and is the run's to report."""
    try:
        render()
    except TemplateLimitError as exc:
        raise Invalid(f"{where}: {exc.message}") from exc
    except TemplateError:
        pass


def _check_budget(params: Any, plan: SweepPlan, index: int) -> None:
    if not isinstance(params, dict):
        raise Invalid(f"{_where(plan, index, 'params')}: must be a mapping, got {params!r}")
    try:
        split_params(params)
    except Invalid as exc:
        where = f"pipeline[{index}].params" if plan.is_pipeline else "parameter_space"
        raise Invalid(f"{where}.{exc.message}") from exc


def _templates_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _templates_in(v)]
    if isinstance(value, list):
        return [t for v in value for t in _templates_in(v)]
    return [value] if is_template(value) else []


def _weights(spec: SweepSpec) -> dict[str, float]:
    names = [s.name for s in spec.scorers]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise Invalid(f"scorers: two scorers are named {duplicate!r}")
    weights = {s.name: s.weight for s in spec.scorers}
    if spec.scoring_config is not None:
        for name, weight in spec.scoring_config.weights.items():
            if name not in weights:
                raise Invalid(f"scoring_config.weights.{name}: no scorer is named {name!r}")
            weights[name] = weight
    if spec.scorers and sum(weights.values()) <= 0:
        raise Invalid("scorers: the weights add up to 0; give at least one a positive weight")
    return weights


def _check_scorers(plan: SweepPlan) -> None:
    context = ScorerContext(complete=_never_called, allow_python=plan.allow_python)
    row, stages = plan.rows[0], plan.stages_for(plan.configs[0])
    trial = score_context(template_context(row, plan.configs[0]), row, _empty_views(stages), "")
    for index, scorer in enumerate(plan.spec.scorers):
        where = f"scorers[{index}]"
        try:
            cls = scorer_class(scorer.type)
            built = create_scorer(scorer.type, scorer.name, scorer.all_options, context)
        except Invalid as exc:
            raise Invalid(f"{where}: {exc.message}") from exc
        for option, render in built.templates().items():
            _within_limits(lambda r=render: r(trial), f"{where}.{option}")
        model = scorer.all_options.get("model")
        if scorer.type == "llm_judge":
            _check_model(model, f"{where}.model", plan.providers)
        if cls.needs_reference and scorer.all_options.get("value") is None:
            missing = next((i for i, r in enumerate(plan.rows) if r.get("expected") is None), None)
            if missing is not None:
                raise Invalid(
                    f"{where}: {scorer.type} compares with `expected`, but dataset "
                    f"row {missing} has none (add it, or give a value option)"
                )


async def _never_called(*_args: Any) -> Any:  # pragma: no cover - validation never scores
    raise AssertionError("scorers are not run during validation")


def compile_plan(
    spec: SweepSpec,
    *,
    allow_python: bool = False,
    access: ProviderAccess | None = None,
    max_runs: int | None = None,
) -> SweepPlan:
    """Check a sweep in depth and return what the executor needs; ``Invalid`` otherwise.
    ``access`` is what its providers may use (``providers.provider_configs``); ``max_runs``
    is the ``SWEEP_MAX_RUNS`` setting (None: no limit)."""
    space = spec.parameter_space
    if spec.dataset.rows is None:
        raise Invalid("dataset.path: files are read by the CLI; send the rows inline")
    size = space_size(space)
    grid_runs = size * len(spec.dataset.rows) * spec.repeats
    if spec.search.strategy in ("grid", "racing") and max_runs is not None and grid_runs > max_runs:
        raise Invalid(
            f"parameter_space: {size} configs × {len(spec.dataset.rows)} rows × "
            f"{spec.repeats} repeats is over the limit of {max_runs} runs (the SWEEP_MAX_RUNS "
            "setting); use search: {strategy: random, n: ...}"
        )
    stages = spec.pipeline if spec.pipeline is not None else [_implicit_stage(space)]
    plan = SweepPlan(
        spec=spec,
        configs=select_configs(space, spec.search.strategy, spec.search.model_dump()),
        stages=stages,
        rows=spec.dataset.rows,
        providers=provider_configs(spec, access, allow_python=allow_python),
        weights=_weights(spec),
        allow_python=allow_python,
    )
    if max_runs is not None and plan.total_runs > max_runs:
        raise Invalid(
            f"search.n: {plan.total_runs} runs is over the limit of {max_runs} "
            "(the SWEEP_MAX_RUNS setting)"
        )
    try:
        _check_stages(plan, space)
    except TemplateError as exc:
        raise Invalid(exc.message) from exc
    _check_scorers(plan)
    _check_priced(plan)
    return plan


def _check_priced(plan: SweepPlan) -> None:
    """A budget in dollars needs a price for every model the search may call: an unpriced
    call costs $0 to the budget, so a search over unpriced models would never be stopped by
    it, and one over a mix would spend without bound on the unpriced ones."""
    budget = plan.spec.search.budget
    if budget is None or budget.usd is None:
        return
    unpriced = []
    for ref in plan.model_refs():
        provider, model = parse_model_ref(ref)
        config = plan.providers.get(provider)
        if config is None or model not in config.prices:
            unpriced.append(ref)
    if unpriced:
        raise Invalid(
            f"search.budget.usd: {', '.join(sorted(unpriced))} ha"
            f"{'s' if len(unpriced) == 1 else 've'} no price in providers.<name>.prices, so "
            "the budget could not count what they cost; give each a price ({input: ..., "
            "output: ...} in dollars per million tokens, 0 for a free model) or budget "
            "calls or tokens instead"
        )
