"""``TrainingBackend``: one worker thread per base model, and the models loaded on demand.

Every call on a base model goes through its single-thread executor, so calls are serialised
in arrival order (a caller that does not wait still gets FIFO semantics, which is what makes
pipelining safe) while the event loop stays free. This module does not import torch; the
engine is imported by name the first time a model is needed.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlooper.errors import ConfigurationError
from promptlooper.training.registry import ModelEntry

ENGINE_MODULE = "promptlooper.training.backend.engine"


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What the host needs to (re)build a run's adapter: sent with every call, so a process
    that restarted, or never saw the run, rebuilds it on first use."""

    key: str
    seed: int
    rank: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]
    resume_from: str | None = None
    """An adapter checkpoint (with optimizer state) to rebuild from instead of a fresh init."""


class _Slot:
    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"train-{entry.name}"
        )
        self.host: Any = None


class TrainingBackend:
    _shared: dict[tuple[Path, str], TrainingBackend] = {}  # noqa: RUF012 - process-wide on purpose
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, data_dir: Path, device: str = "auto") -> TrainingBackend:
        """The process's backend for this DATA_DIR: the API's trainer and the sweeps' ``local``
        provider use one, so a base model is loaded once whichever of them asks first."""
        key = (data_dir.resolve(), device)
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(data_dir, device)
            return cls._shared[key]

    def __init__(self, data_dir: Path, device: str = "auto") -> None:
        self.data_dir = data_dir
        self.device = device
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()

    def _slot(self, entry: ModelEntry) -> _Slot:
        with self._lock:
            slot = self._slots.get(entry.name)
            if slot is None:
                slot = self._slots[entry.name] = _Slot(entry)
            return slot

    def submit(self, entry: ModelEntry, method: str, *args: Any) -> concurrent.futures.Future[Any]:
        """Queue ``ModelHost.<method>(*args)`` on the base model's worker. The first call loads
        the model there, so not even importing torch ever blocks the caller."""
        slot = self._slot(entry)

        def job() -> Any:
            if slot.host is None:
                try:
                    engine = importlib.import_module(ENGINE_MODULE)
                except ImportError as exc:
                    raise ConfigurationError(
                        f"training needs PyTorch, transformers and PEFT ({exc.msg}): "
                        "pip install 'promptlooper[training]'"
                    ) from exc
                slot.host = engine.ModelHost(entry, self.data_dir, self.device)
            return getattr(slot.host, method)(*args)

        return slot.executor.submit(job)

    def forget(self, entry: ModelEntry, key: str) -> concurrent.futures.Future[Any] | None:
        """Drop a run's adapter and optimizer, if this process ever built them."""
        with self._lock:
            slot = self._slots.get(entry.name)
        if slot is None:
            return None
        return slot.executor.submit(lambda: slot.host.drop(key) if slot.host else None)

    def shutdown(self) -> None:
        """Finish the calls under way, drop the queued ones and the models; a later
        ``shared()`` for the same DATA_DIR starts afresh."""
        with self._lock:
            slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            slot.executor.shutdown(wait=True, cancel_futures=True)
        with self._shared_lock:
            for key, backend in list(self._shared.items()):
                if backend is self:
                    del self._shared[key]
