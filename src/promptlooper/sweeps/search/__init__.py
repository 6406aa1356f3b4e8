"""Adaptive searches: racing over a grid, and Optuna over spaces too large to enumerate."""
