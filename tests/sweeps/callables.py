"""User callables for the python provider and scorer tests (tests.sweeps.callables)."""

from __future__ import annotations

from typing import Any


def shout(prompt: str, model: str, params: dict[str, Any], system: str | None) -> str:
    return prompt.upper()


async def counted(prompt: str, model: str, params: dict[str, Any], system: str | None) -> dict:
    return {"text": f"{len(prompt.split())} words", "tokens_in": 1000, "tokens_out": 500}


def grade_seven(prompt: str, model: str, params: dict[str, Any], system: str | None) -> str:
    return "Score: 7"


def length_ratio(input_data: Any, output: str, context: dict[str, Any]) -> float:
    return len(output) / 10


def explode(prompt: str, model: str, params: dict[str, Any], system: str | None) -> str:
    raise RuntimeError("user code failed")
