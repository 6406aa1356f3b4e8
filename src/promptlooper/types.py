"""Shared aliases and sentinels, and the base of request bodies. Imports nothing from the rest
of the package but ``values``."""

from __future__ import annotations

import enum
import uuid
from typing import Any, ClassVar, Final, Self, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from promptlooper.values import find_problem

ID: TypeAlias = uuid.UUID
JSONValue: TypeAlias = Any
JSONObject: TypeAlias = dict[str, Any]


PATTERN_MISMATCH: Final = "string_pattern_mismatch"


def pattern_words(words: str) -> WrapValidator:
    """Put after a ``StringConstraints(pattern=...)`` (or a ``Field(pattern=...)``), so that a
    value the pattern refuses is told ``words`` ("must be lowercase letters and digits, ...")
    where the validation library would show the regular expression itself, which an API
    client, a CLI user and a form user alike would have to decode. The problem keeps its type
    and the pattern in its context; the schema still publishes the pattern."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            problem = exc.errors()[0]
            if problem["type"] != PATTERN_MISMATCH:
                raise
            raise PydanticCustomError(PATTERN_MISMATCH, words, problem.get("ctx")) from None

    return WrapValidator(check)


class _Unset(enum.Enum):
    """Marks "not given", so that ``None`` stays free to mean "no value" or "no limit"."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset.UNSET
UnsetType: TypeAlias = _Unset

NO_ESCAPES: Final = "no_escapes"
"""Validation context flag: the JSON document holds no ``\\u`` escape. The JSON parser refuses
a raw NUL and text that is not UTF-8, so without escapes no text in it holds a NUL or a lone
surrogate, and floats are finite by ``RequestBody``'s config: a ``flat`` body is storable."""


class RequestBody(BaseModel):
    """What users send (API bodies, sweep and config files): unknown fields are refused, and so
    are NaN and infinity, which the JSON and YAML parsers here accept but which would reach
    weights, scores and statistics. A body that takes extra fields says so in its own config.

    Every value, free-form JSON included (dataset rows, parameters, metadata), must be one both
    databases store alike (see ``values``): a problem is a 422 naming the field, on SQLite and
    PostgreSQL the same, rather than a 500 from one of them or a row no read can load."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    checked_elsewhere: ClassVar[frozenset[str]] = frozenset()
    """Fields whose parts are validated (and refused) one at a time by the code that takes
    them."""

    flat: ClassVar[bool] = False
    """Every field is a scalar (text, a number, a flag, an id, a timestamp): read from a JSON
    document without ``\\u`` escapes (validation context ``NO_ESCAPES``), such a body holds
    nothing unstorable, and the walk over its fields, which costs more than the rest of its
    validation, is skipped."""

    @model_validator(mode="after")
    def _storable(self, info: ValidationInfo) -> Self:
        if self.flat and info.context is not None and info.context.get(NO_ESCAPES):
            return self
        fields = {
            name: value
            for name, value in {**self.__dict__, **(self.model_extra or {})}.items()
            if name not in self.checked_elsewhere
        }
        problem = find_problem(fields, skip=RequestBody)
        if problem is not None:
            error = PydanticCustomError(problem.kind, problem.message)
            detail = InitErrorDetails(type=error, loc=problem.loc, input=None)
            raise ValidationError.from_exception_data(type(self).__name__, [detail])
        return self
