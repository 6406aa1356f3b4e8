"""Where training files live under DATA_DIR; shared by the trainer, which writes checkpoints,
and the sweeps' ``local`` provider, which reads them."""

from __future__ import annotations

import uuid
from pathlib import Path

from promptlooper.errors import Invalid


def checkpoint_root(data_dir: Path, run_id: object) -> Path:
    """``DATA_DIR/training/<run id>``: one folder per checkpoint name inside."""
    return data_dir.resolve() / "training" / str(run_id)


def checkpoint_exists(name: str) -> str:
    """Why a save was refused: the same words from the service and from the worker."""
    return f"checkpoint {name!r} already exists; save with overwrite to replace it"


def parse_checkpoint_ref(model: str) -> tuple[uuid.UUID, str] | None:
    """``"<run id>@<name>"`` → ``(run id, name)``; None for a registry model name."""
    run, sep, name = model.partition("@")
    if not sep:
        return None
    try:
        return uuid.UUID(run), name
    except ValueError as exc:
        raise Invalid(f"local:{model}: expected <run id>@<checkpoint>") from exc
