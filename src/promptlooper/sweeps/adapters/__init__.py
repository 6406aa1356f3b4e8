"""Provider adapters, registered by name; model references read ``provider:model``."""

from promptlooper.sweeps.adapters.base import (
    Adapter,
    AdapterError,
    AdapterResponse,
    ProviderConfig,
)
from promptlooper.sweeps.adapters.registry import (
    adapter_types,
    create_adapter,
    parse_model_ref,
    register_adapter,
)

__all__ = [
    "Adapter",
    "AdapterError",
    "AdapterResponse",
    "ProviderConfig",
    "adapter_types",
    "create_adapter",
    "parse_model_ref",
    "register_adapter",
]
