"""Scorers over text: matching, containment, patterns, similarity, numbers and length."""

from __future__ import annotations

import re
import string
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from promptlooper.sweeps.scorers.base import BaseScorer, ReferenceOptions, ScorerOptions
from promptlooper.sweeps.scorers.registry import register_scorer

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


class MatchOptions(ReferenceOptions):
    ignore_case: bool = False
    strip: bool = True
    normalize_whitespace: bool = True
    ignore_punctuation: bool = False


@register_scorer("exact_match")
class ExactMatch(BaseScorer):
    """1 when the output equals the reference (any of them, for a list) after normalisation."""

    options_model = MatchOptions
    needs_reference = True

    def _normalise(self, text: str) -> str:
        o = self.options
        assert isinstance(o, MatchOptions)
        if o.ignore_punctuation:
            text = text.translate(_PUNCTUATION)
        if o.normalize_whitespace:
            text = " ".join(text.split())
        elif o.strip:
            text = text.strip()
        return text.casefold() if o.ignore_case else text

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> float:
        got = self._normalise(output)
        return float(any(got == self._normalise(ref) for ref in _as_list(self.reference(context))))


class ContainsOptions(ReferenceOptions):
    ignore_case: bool = False


@register_scorer("contains")
class Contains(BaseScorer):
    """1 when the output contains the reference (any of them, for a list)."""

    options_model = ContainsOptions
    needs_reference = True
    case_insensitive = False

    def _fold(self, text: str) -> str:
        ignore = self.case_insensitive or getattr(self.options, "ignore_case", False)
        return text.casefold() if ignore else text

    def found(self, output: str, context: dict[str, Any]) -> list[bool]:
        haystack = self._fold(output)
        return [self._fold(ref) in haystack for ref in _as_list(self.reference(context))]

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> float:
        return float(any(self.found(output, context)))


@register_scorer("icontains")
class IContains(Contains):
    """``contains``, ignoring case."""

    case_insensitive = True


@register_scorer("contains_all")
class ContainsAll(Contains):
    """The fraction of the reference strings the output contains (1 when all are there)."""

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> float:
        found = self.found(output, context)
        return sum(found) / len(found) if found else 0.0


@register_scorer("contains_any")
class ContainsAny(Contains):
    """1 when the output contains at least one of the reference strings."""


class RegexOptions(ScorerOptions):
    pattern: str
    ignore_case: bool = False
    full_match: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return pattern


@register_scorer("regex")
class Regex(BaseScorer):
    """1 when the pattern matches the output (anywhere, or the whole of it)."""

    options_model = RegexOptions

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.options
        assert isinstance(o, RegexOptions)
        self._pattern = re.compile(o.pattern, re.IGNORECASE if o.ignore_case else 0)
        self._match = self._pattern.fullmatch if o.full_match else self._pattern.search

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> float:
        return float(self._match(output.strip()) is not None)


class SimilarityOptions(ReferenceOptions):
    method: Literal["ratio", "partial_ratio", "token_sort_ratio", "token_set_ratio"] = "ratio"
    ignore_case: bool = True


@register_scorer("similarity")
class Similarity(BaseScorer):
    """Normalised edit-distance similarity to the reference (rapidfuzz), best over a list."""

    options_model = SimilarityOptions
    needs_reference = True

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> float:
        from rapidfuzz import fuzz

        o = self.options
        assert isinstance(o, SimilarityOptions)
        measure = getattr(fuzz, o.method)
        fold = str.casefold if o.ignore_case else str
        refs = _as_list(self.reference(context))
        return max(measure(fold(output.strip()), fold(ref.strip())) for ref in refs) / 100


class NumericOptions(ReferenceOptions):
    tolerance: float = Field(default=0.0, ge=0)
    relative: bool = False


@register_scorer("numeric")
class Numeric(BaseScorer):
    """1 when the first number in the output is within ``tolerance`` of the reference
    (absolute, or a fraction of the reference with ``relative``)."""

    options_model = NumericOptions
    needs_reference = True

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> float:
        o = self.options
        assert isinstance(o, NumericOptions)
        match = _NUMBER.search(output.replace(",", ""))
        if match is None:
            return 0.0
        got, want = float(match.group()), float(self.reference(context))
        allowed = o.tolerance * abs(want) if o.relative else o.tolerance
        return float(abs(got - want) <= allowed + 1e-12)


class LengthOptions(ScorerOptions):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=1)
    unit: Literal["chars", "words"] = "chars"

    @model_validator(mode="after")
    def _bounds(self) -> LengthOptions:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


@register_scorer("length")
class Length(BaseScorer):
    """1 inside the bounds; outside, the ratio of the bound to the length (so twice too long
    scores 0.5)."""

    options_model = LengthOptions

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> float:
        o = self.options
        assert isinstance(o, LengthOptions)
        size = len(output.split()) if o.unit == "words" else len(output.strip())
        if o.max is not None and size > o.max:
            return o.max / size
        if o.min is not None and size < o.min:
            return size / o.min
        return 1.0
