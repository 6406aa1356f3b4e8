"""Shared aliases and sentinels. Imports nothing from the rest of the package."""

from __future__ import annotations

import enum
import uuid
from typing import Any, Final, TypeAlias

from pydantic import BaseModel, ConfigDict

ID: TypeAlias = uuid.UUID
JSONValue: TypeAlias = Any
JSONObject: TypeAlias = dict[str, Any]


class _Unset(enum.Enum):
    """Marks "not given", so that ``None`` stays free to mean "no value" or "no limit"."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset.UNSET
UnsetType: TypeAlias = _Unset


class RequestBody(BaseModel):
    """What users send (API bodies, sweep and config files): unknown fields are refused, and so
    are NaN and infinity, which the JSON and YAML parsers here accept but which would reach
    weights, scores and statistics. A body that takes extra fields says so in its own config."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
