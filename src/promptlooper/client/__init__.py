"""The Python SDK: ``Client`` (blocking) and ``AsyncClient`` over the REST API.

from promptlooper.client import Client

client = Client("http://127.0.0.1:8000", api_key="pl_...", project_id="...")
served = client.variants.resolve("extractor", default={"model_name": "gpt-4o-mini"})
client.variants.log(served, latency_ms=420, tokens_in=812, tokens_out=64, quality=0.9)
client.online.track("homepage_hero_test", "control", "user-42", "conversion", value=49.0)
"""

from promptlooper.client.aio import AsyncClient
from promptlooper.client.calls import Resolved
from promptlooper.client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from promptlooper.client.events import Delivery
from promptlooper.client.outbox import TrainingFuture
from promptlooper.client.sync import Client
from promptlooper.client.training import TrainingClient

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "Delivery",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Resolved",
    "ServerError",
    "TrainingClient",
    "TrainingFuture",
    "ValidationError",
]
