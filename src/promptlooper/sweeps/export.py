"""Exports of an experiment's best config (JSON, .env, YAML) and its markdown report.

Pure renderers over an ``ExperimentSummary``: the API and ``promptlooper export`` produce
byte-identical files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from promptlooper import __version__
from promptlooper.errors import NotFound
from promptlooper.sweeps.summary import ConfigSummary, ExperimentSummary
from promptlooper.sweeps.verdict import answer, p_text, versus_text

NO_COMPLETED_RUNS = "No completed runs for this experiment"
_ENV_SAFE = re.compile(r"^[A-Za-z0-9_./:@+,-]*$")


def best_config(
    experiment_id: Any, name: str, summary: ExperimentSummary, exported_at: datetime | None = None
) -> dict[str, Any]:
    """The top-ranked config with its score and where it came from."""
    if summary.counts.get("completed", 0) == 0:
        raise NotFound(NO_COMPLETED_RUNS)
    best: ConfigSummary = (summary.ranked or summary.configs)[0]
    if best.completed == 0:
        best = next(c for c in summary.configs if c.completed)
    return {
        "experiment_id": str(experiment_id),
        "experiment_name": name,
        "config_hash": best.config_hash,
        "run_id": str(best.best_run_id),
        "weighted_score": best.score,
        "scores": best.scores,
        "runs": best.completed,
        **_lead(summary, best),
        "config": best.parameters,
        "exported_at": (exported_at or datetime.now(UTC)).isoformat(),
    }


def _lead(summary: ExperimentSummary, best: ConfigSummary) -> dict[str, Any]:
    """Whether the winner is significantly better than the runner-up: their paired
    difference (winner minus runner-up) over the rows both answered, Holm-adjusted over the
    leaderboard's comparisons with the winner; null fields without a runner-up that shares
    two rows with it."""
    found = best.interval
    interval = (
        {"low": found.low, "high": found.high, "rows": found.n, "method": found.method}
        if found
        else None
    )
    ranked = summary.ranked
    versus = summary.runner_up if ranked and ranked[0] is best else None
    if versus is None:
        return {"score_interval": interval, "significantly_better": None, "runner_up": None}
    paired = versus.paired
    return {
        "score_interval": interval,
        "significantly_better": not versus.tied,
        "runner_up": {
            "config_hash": ranked[1].config_hash,
            "weighted_score": ranked[1].score,
            "lead": -paired.diff,
            "lead_low": -paired.high,
            "lead_high": -paired.low,
            "rows": paired.n,
            "test": paired.test,
            "p_value": paired.p_value,
            "p_adjusted": versus.p_adjusted,
        },
    }


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested keys joined by ``_`` and upper-cased; lists as JSON; the rest as text."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}_{key}".upper() if prefix else str(key).upper()
        name = re.sub(r"[^A-Z0-9_]", "_", name)
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        elif isinstance(value, bool):
            flat[name] = "true" if value else "false"
        elif value is None:
            flat[name] = ""
        else:
            flat[name] = str(value)
    return flat


def _env_value(value: str) -> str:
    """Quote a value so that a dotenv parser and a shell that sources the file both read it as
    written, and a shell runs nothing in it: single quotes (literal in both), or, for a value
    holding a single quote, double quotes with the shell's specials escaped."""
    if _ENV_SAFE.match(value):
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + re.sub(r'([\\"$`])', r"\\\1", value) + '"'


UNSAFE_ENV_NAMES = re.compile(
    r"^(PATH|IFS|ENV|BASH_ENV|CDPATH|HOME|SHELL|SHELLOPTS|BASHOPTS|PS[0-9]|PROMPT_COMMAND"
    r"|NODE_OPTIONS|PERL5OPT|PERL5LIB|RUBYOPT|JAVA_TOOL_OPTIONS|(LD_|DYLD_|PYTHON|BASH_).*)$"
)
"""Names a shell, a dynamic loader or an interpreter acts on: a parameter named so is written
commented out, so that sourcing the file cannot change what programs run."""


def _env_line(key: str, value: str) -> str:
    line = f"{key}={_env_value(value)}"
    if UNSAFE_ENV_NAMES.match(key):
        return f"# not set (the shell or loader acts on {key}): " + " ".join(line.split())
    return line


def _header(best: dict[str, Any]) -> list[str]:
    score = best["weighted_score"]
    return [
        f"# PromptLooper {__version__}: best config",
        f"# Experiment: {' '.join(best['experiment_name'].split())} ({best['experiment_id']})",
        f"# Weighted score: {score:.4f}" if score is not None else "# Weighted score: n/a",
        f"# Config hash: {best['config_hash']}  runs: {best['runs']}",
        *_lead_header(best),
        f"# Exported at: {best['exported_at']}",
    ]


def _lead_header(best: dict[str, Any]) -> list[str]:
    runner_up = best.get("runner_up")
    if runner_up is None:
        return []
    verdict = "significantly better" if best["significantly_better"] else "not shown to differ"
    return [
        f"# Against the runner-up ({runner_up['config_hash'][:8]}): {verdict}, lead "
        f"{runner_up['lead']:+.4f} [{runner_up['lead_low']:+.4f}, {runner_up['lead_high']:+.4f}] "
        f"over {runner_up['rows']} rows, {p_text(runner_up['p_adjusted'])} adjusted"
    ]


def render_env(best: dict[str, Any]) -> str:
    lines = _header(best)
    lines += [_env_line(key, value) for key, value in flatten(best["config"]).items()]
    return "\n".join(lines) + "\n"


def render_yaml(best: dict[str, Any]) -> str:
    body = yaml.safe_dump(best, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return "\n".join(_header(best)) + "\n" + body


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _values(values: Any) -> str:
    """A parameter's values, or its range as Optuna samples it."""
    if isinstance(values, Mapping):
        scale = " (log scale)" if values.get("log") else ""
        return f"{values['low']} to {values['high']}{scale}"
    return ", ".join(_cell(v) for v in values)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_report(
    experiment: Any,
    summary: ExperimentSummary,
    top_n: int = 5,
    now: datetime | None = None,
    eliminated: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The markdown report: summary, space, top configs (which differences are real), the
    configs a racing search eliminated (``search.store.eliminated``), distributions, tokens,
    timing."""
    out = [f"# Experiment Report: {experiment.name}", ""]
    if experiment.description:
        out += [experiment.description, ""]
    out += [
        f"_Generated by PromptLooper {__version__} at {(now or datetime.now(UTC)).isoformat()}._",
        "",
    ]

    counts = summary.counts
    out += ["## Run Summary", "", "| Metric | Value |", "| --- | --- |"]
    out += [
        f"| Total runs | {summary.total_runs} |",
        f"| Completed | {counts.get('completed', 0)} |",
        f"| Failed | {counts.get('failed', 0)} |",
        f"| Pending | {counts.get('pending', 0)} |",
        *([f"| Skipped by the search | {counts['skipped']} |"] if counts.get("skipped") else []),
        f"| Served from cache | {summary.cached_runs} |",
        f"| Status | {experiment.current_status} |",
        "",
    ]

    out += ["## Configuration Space", "", "| Parameter | Values |", "| --- | --- |"]
    for key, values in (experiment.parameter_space or {}).items():
        out.append(f"| {key} | {_values(values)} |")
    out.append("")

    ranked = summary.ranked[:top_n]
    out += [f"## Top {top_n} Configurations", ""]
    if not ranked:
        out += ["_No scored runs available._", ""]
    else:
        out += [answer(summary) or "", ""]
        keys = sorted({k for c in ranked for k in c.parameters})
        scorer_names = sorted(summary.scorers)
        repeated = any(c.repeats > 1 for c in ranked)
        header = ["Rank", "Weighted Score", "95 % interval", "vs #1 (adjusted p)", "Runs"]
        header += ["pass^k", "Flaky rows"] if repeated else []
        header += [*keys, *scorer_names, "Config hash"]
        out += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for rank, config in enumerate(ranked, start=1):
            found = config.interval
            cells = [str(rank), _fmt(config.score)]
            cells.append(f"{found.low:.4f} – {found.high:.4f}" if found and found.n > 1 else "")
            cells += [versus_text(config.versus_leader), str(config.completed)]
            if repeated:
                cells += [_fmt(config.pass_k, 3), str(len(config.flaky_rows))]
            cells += [_cell(config.parameters.get(k, "")) for k in keys]
            cells += [_fmt(config.scores.get(n)) for n in scorer_names]
            cells.append(f"`{config.config_hash}`")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")

    if eliminated:
        out += [
            "## Eliminated by the Race",
            "",
            "| Config hash | Parameters | Lost to | Rows | Effect | Adjusted p | Reason |",
            "|" + " --- |" * 7,
        ]
        for entry in eliminated:
            params = ", ".join(f"{k}={_cell(v)}" for k, v in entry["parameters"].items())
            effect, p_value = entry["effect"], entry["p_value"]
            out.append(
                f"| `{entry['config_hash']}` | {params} | `{entry['lost_to']}` | "
                f"{entry['rows']} | {'n/a' if effect is None else f'{effect:+.4f}'} | "
                f"{'n/a' if p_value is None else f'{p_value:.2g}'} | "
                f"{_cell(entry['reason'] or 'significantly worse')} |"
            )
        out.append("")

    out += ["## Score Distributions", ""]
    if not summary.scorers:
        out += ["_No scored runs available._", ""]
    else:
        out += ["| Scorer | Weight | N | Mean | Min | Max | Std dev |", "|" + " --- |" * 7]
        for name, stats in summary.scorers.items():
            weight = summary.weights.get(name, 1.0)
            out.append(
                f"| {name} | {weight:g} | {stats.n} | {_fmt(stats.mean)} | "
                f"{_fmt(stats.minimum)} | {_fmt(stats.maximum)} | {_fmt(stats.stdev)} |"
            )
        out.append("")

    out += ["## Token Usage", "", "| Metric | Value |", "| --- | --- |"]
    out += [
        f"| Total tokens in | {summary.tokens_in} |",
        f"| Total tokens out | {summary.tokens_out} |",
        f"| Total cost (USD) | {summary.cost:.6f} |",
        "",
    ]

    timing = summary.timing
    out += ["## Timing", ""]
    if timing is None:
        out += ["_No completed runs._", ""]
    else:
        out += ["| Metric | Value |", "| --- | --- |"]
        out += [
            f"| Fastest run | {timing.fastest_ms:.1f} ms |",
            f"| Median run | {timing.median_ms:.1f} ms |",
            f"| Mean run | {timing.mean_ms:.1f} ms |",
            f"| Slowest run | {timing.slowest_ms:.1f} ms |",
            "",
        ]
    return "\n".join(out)
