"""The provider_credentials table."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from promptlooper.auth.models import User
from promptlooper.db.base import Base, TimestampMixin, UUIDPrimaryKeyMixin
from promptlooper.projects.models import Project


class ProviderCredential(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """A provider key a project's sweeps may send, by name (``credential: NAME``)."""

    __tablename__ = "provider_credentials"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Project.id, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    sealed: Mapped[str] = mapped_column(Text)
    """The key, encrypted (``box.SecretBox``); never the plaintext."""
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(User.id, ondelete="SET NULL")
    )
