"""The model registry: which base models the training API offers, read from YAML.

Pure data: reading the registry never loads PyTorch, so listing models is instant.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from promptlooper.errors import BadRequest, ConfigurationError

DEFAULT_REGISTRY = Path(__file__).with_name("models.yaml")


class LoraDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank: int = Field(default=8, ge=1, le=1024)
    alpha: float = Field(default=16, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1)
    modules: list[str] | None = None
    """The base model's layers a LoRA may target (known from its architecture): a run naming
    any other is refused when it is created, not at its first call. None: not checked."""

    @model_validator(mode="after")
    def _targets_known(self) -> LoraDefaults:
        unknown = self.unknown_modules(self.target_modules)
        if unknown:
            raise ValueError(f"target_modules {unknown} are not among modules")
        return self

    def unknown_modules(self, names: list[str]) -> list[str]:
        """The names that are not layers of the model (none when its layers are not listed)."""
        return [] if self.modules is None else [n for n in names if n not in self.modules]


class GGUFSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str
    package: str | None = None
    """A Python package that ships the file; ``file`` is then relative to it."""
    path: str | None = None


class ModelSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    builtin: Literal["tiny"] | None = None
    gguf: GGUFSource | None = None
    path: str | None = None
    hf: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        given = [k for k in ("builtin", "gguf", "path", "hf") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a source names exactly one of builtin, gguf, path, hf")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("builtin", "gguf", "path", "hf") if getattr(self, k) is not None)

    def gguf_file(self) -> Path | None:
        """Where the GGUF file is, or None when its package is not installed."""
        assert self.gguf is not None
        if self.gguf.package is None:
            return Path(self.gguf.path or ".") / self.gguf.file
        spec = importlib.util.find_spec(self.gguf.package)
        if spec is None or spec.origin is None:
            return None
        return Path(spec.origin).parent / self.gguf.file

    def available(self) -> bool:
        """Whether the weights are at hand without a download."""
        if self.gguf is not None:
            found = self.gguf_file()
            return found is not None and found.is_file()
        if self.path is not None:
            return Path(self.path).is_dir()
        return True


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    description: str = ""
    source: ModelSource
    chat_template: str = "tokenizer"
    max_seq_len: int = Field(default=2048, ge=8)
    cpu_threads: int | None = Field(default=None, ge=1)
    """PyTorch's intra-op threads for this model on a CPU; None: one per core. A small model
    gains nothing from more than one, and one leaves the other cores to the server."""
    device: Literal["cpu", "cuda"] | None = None
    """Where this model runs, in place of ``TRAINING_DEVICE`` (None: that setting). On a Ray
    cluster, ``cuda`` places the model's host on a node with a free GPU."""
    lora: LoraDefaults = Field(default_factory=LoraDefaults)


class ModelRegistry:
    def __init__(self, entries: dict[str, ModelEntry]) -> None:
        self._entries = entries

    @classmethod
    def from_file(cls, path: Path) -> ModelRegistry:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            models = raw.get("models") or {}
            entries = {
                name: ModelEntry.model_validate({**spec, "name": name})
                for name, spec in models.items()
            }
        except (OSError, yaml.YAMLError, ValidationError, AttributeError) as exc:
            raise ConfigurationError(f"training model registry {path}: {exc}") from exc
        if not entries:
            raise ConfigurationError(f"training model registry {path} lists no models")
        return cls(entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def get(self, name: str) -> ModelEntry:
        """The entry, or ``BadRequest`` naming every supported model."""
        entry = self._entries.get(name)
        if entry is None:
            raise BadRequest(
                f"Unsupported model {name!r}. Supported models: {', '.join(self._entries)}"
            )
        return entry


@cache
def load_registry(path: Path | str | None = None) -> ModelRegistry:
    """The registry in ``path`` (a ``TRAINING_MODELS_FILE``), or the one that ships."""
    return ModelRegistry.from_file(Path(path) if path else DEFAULT_REGISTRY)
