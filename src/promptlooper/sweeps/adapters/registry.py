"""Name-keyed adapter registry.

Built-in adapters live in their own modules and are imported only when a sweep uses them, so
that (say) a mock-only sweep never loads an HTTP client. Third-party adapters register with
``@register_adapter("name")``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from promptlooper.errors import Invalid
from promptlooper.sweeps.adapters.base import Adapter, ProviderConfig

AdapterFactory = Callable[[ProviderConfig], Adapter]

_FACTORIES: dict[str, AdapterFactory] = {}
_BUILTIN_MODULES = {
    "mock": "promptlooper.sweeps.adapters.mock",
    "openai": "promptlooper.sweeps.adapters.openai",
    "anthropic": "promptlooper.sweeps.adapters.anthropic",
    "python": "promptlooper.sweeps.adapters.python",
    "local": "promptlooper.sweeps.adapters.local",
}


def register_adapter(name: str) -> Callable[[AdapterFactory], AdapterFactory]:
    def decorate(factory: AdapterFactory) -> AdapterFactory:
        _FACTORIES[name] = factory
        return factory

    return decorate


def adapter_types() -> list[str]:
    return sorted(set(_FACTORIES) | set(_BUILTIN_MODULES))


def load_adapter_module(provider_type: str) -> None:
    """Import a built-in adapter's module (and its HTTP client) now rather than at the first
    call, so that a caller can do its start-up work in one place."""
    if provider_type not in _FACTORIES and provider_type in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[provider_type])


def create_adapter(config: ProviderConfig) -> Adapter:
    load_adapter_module(config.type)
    factory = _FACTORIES.get(config.type)
    if factory is None:
        raise Invalid(f"unknown provider type {config.type!r}; known: {', '.join(adapter_types())}")
    return factory(config)


def parse_model_ref(ref: str) -> tuple[str, str]:
    """``"openai:gpt-4o-mini"`` → ``("openai", "gpt-4o-mini")``."""
    provider, sep, model = ref.partition(":")
    if not sep or not provider or not model:
        raise Invalid(f"model {ref!r} must be written provider:model (e.g. openai:gpt-4o-mini)")
    return provider, model
