"""Scorers for structured output: valid JSON, and JSON that satisfies a schema."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from promptlooper.sweeps.scorers.base import BaseScorer, ScorerOptions
from promptlooper.sweeps.scorers.registry import register_scorer

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class JsonOptions(ScorerOptions):
    extract: bool = True
    """Accept JSON inside a Markdown code fence, as chat models often answer."""


def parse_output(output: str, extract: bool) -> Any:
    text = output.strip()
    if extract and (fenced := _FENCE.search(text)):
        text = fenced.group(1).strip()
    return json.loads(text)


@register_scorer("json_valid")
class JsonValid(BaseScorer):
    """1 when the output parses as JSON."""

    options_model = JsonOptions

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> float:
        o = self.options
        assert isinstance(o, JsonOptions)
        try:
            parse_output(output, o.extract)
        except ValueError:
            return 0.0
        return 1.0


class JsonSchemaOptions(JsonOptions):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: dict[str, Any] = Field(alias="schema")

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        return schema


@register_scorer("json_schema")
class JsonSchema(BaseScorer):
    """1 when the output is JSON that validates against ``schema`` (JSON Schema 2020-12)."""

    options_model = JsonSchemaOptions

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from jsonschema import Draft202012Validator

        o = self.options
        assert isinstance(o, JsonSchemaOptions)
        self._validator = Draft202012Validator(o.schema_)

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> float:
        o = self.options
        assert isinstance(o, JsonSchemaOptions)
        try:
            document = parse_output(output, o.extract)
        except ValueError:
            return 0.0
        return float(self._validator.is_valid(document))
