"""The HTTP door: ``create_app(settings)`` builds the FastAPI application."""

from promptlooper.api.app import create_app

__all__ = ["create_app"]
