"""Shared aliases and sentinels. Imports nothing from the rest of the package."""

from __future__ import annotations

import enum
import uuid
from typing import Any, Final, TypeAlias

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
