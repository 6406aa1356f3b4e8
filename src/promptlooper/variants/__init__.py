"""Agents and variants: the configs production code runs, versioned, with one active variant."""
