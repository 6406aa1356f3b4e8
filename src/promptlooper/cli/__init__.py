"""The ``promptlooper`` command line."""

from promptlooper.cli.main import main

__all__ = ["main"]
