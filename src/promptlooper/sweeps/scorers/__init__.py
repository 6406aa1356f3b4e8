"""Scorers, registered by type name; a sweep file names them (``type: exact_match``)."""

from promptlooper.sweeps.scorers.base import Scorer, ScorerContext
from promptlooper.sweeps.scorers.registry import create_scorer, register_scorer, scorer_types

__all__ = ["Scorer", "ScorerContext", "create_scorer", "register_scorer", "scorer_types"]
