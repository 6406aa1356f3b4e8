"""Training runs, their per-step metrics and their checkpoints.

The adapter weights and optimizer state live in the backend's memory and in checkpoint folders
under DATA_DIR; these rows are what survives a restart and what the API lists.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from promptlooper.auth.models import User
from promptlooper.db.base import Base, TimestampMixin, UUIDPrimaryKeyMixin, utcnow
from promptlooper.db.types import JSONType, UTCDateTime


class TrainingRun(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "training_runs"

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(User.id, ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    base_model: Mapped[str] = mapped_column(String(200))
    lora: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """``{"rank", "alpha", "dropout", "target_modules"}`` with the registry's defaults filled."""
    seed: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def adapter_key(self) -> str:
        """The run's adapter name inside the shared base model."""
        return f"run_{self.id.hex}"


class TrainingStep(Base):
    __tablename__ = "training_steps"
    __table_args__ = (UniqueConstraint("run_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("training_runs.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float] = mapped_column(Float)
    tokens: Mapped[int] = mapped_column(Integer)
    grad_norm: Mapped[float] = mapped_column(Float)
    learning_rate: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TrainingCheckpoint(UUIDPrimaryKeyMixin, Base):
    __tablename__ = "training_checkpoints"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("training_runs.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
