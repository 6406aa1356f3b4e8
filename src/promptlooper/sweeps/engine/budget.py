"""Budget fields: stage parameters the engine enforces instead of sending them to the model.

An agent's config carries ``timeout_seconds``, ``max_retries``, ``token_budget`` and
``input_token_limit`` next to ``max_tokens``; when a sweep runs such a config they govern the
call (timeout and retries override the provider's defaults), the run (a pipeline stops once its
tokens reach the budget) and the prompt (one longer than the limit fails the run before any
call is made). ``max_tokens`` is an ordinary model parameter and goes to the provider.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptlooper.errors import Invalid

BUDGET_PARAMS = ("timeout_seconds", "max_retries", "token_budget", "input_token_limit")
_MINIMUM = {"timeout_seconds": 0.001, "max_retries": 0, "token_budget": 1, "input_token_limit": 1}
_FALLBACK_ENCODING = "cl100k_base"


@dataclass(slots=True, frozen=True)
class Budget:
    timeout_seconds: float | None = None
    max_retries: int | None = None
    token_budget: int | None = None
    input_token_limit: int | None = None


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], Budget]:
    """The parameters for the provider, and the budget fields among ``params``.

    ``Invalid`` (naming the field) when a budget field is not a number in its range; the plan
    checks every config this way before anything runs.
    """
    if not any(name in params for name in BUDGET_PARAMS):
        return dict(params), Budget()
    values: dict[str, Any] = {}
    for name in BUDGET_PARAMS:
        value = params.get(name)
        if value is None:
            continue
        number = _number(name, value)
        values[name] = number if name == "timeout_seconds" else int(number)
    forwarded = {k: v for k, v in params.items() if k not in BUDGET_PARAMS}
    return forwarded, Budget(**values)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"{name}: must be a number, got {value!r}")
    if name != "timeout_seconds" and value != int(value):
        raise Invalid(f"{name}: must be a whole number, got {value!r}")
    if value < _MINIMUM[name]:
        raise Invalid(f"{name}: must be at least {_MINIMUM[name]:g}, got {value!r}")
    return float(value)


@functools.cache
def _encoding(model: str) -> Any:
    """The OpenAI tokenizer for ``model`` when it is an OpenAI model, else ``cl100k_base``
    (for other providers' models the count is an estimate). Imported on first use: loading
    the tokenizer costs about half a second, and most sweeps set no limit."""
    # The library reads its vocabularies with a deprecated importlib.resources call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

        try:
            name = bpe_openai.encoding_name_for_model(model)
        except KeyError:
            name = _FALLBACK_ENCODING
        return bpe_openai.get_encoding(name)


def count_tokens(text: str, model: str) -> int:
    """Tokens in ``text`` as ``model`` would count them (special-token text is plain text)."""
    return len(_encoding(model).encode(text, disallowed_special=()))


def check_input(prompt: str, system: str | None, model_ref: str, limit: int | None) -> None:
    """Refuse a rendered prompt (with its system prompt) longer than ``limit`` tokens."""
    if limit is None:
        return
    model = model_ref.partition(":")[2] or model_ref
    used = count_tokens(prompt, model) + (count_tokens(system, model) if system else 0)
    if used > limit:
        raise Invalid(f"input_token_limit: the prompt has {used} tokens, over the limit of {limit}")
