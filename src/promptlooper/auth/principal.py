"""Who is calling, and the ownership rule every domain applies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from promptlooper.errors import Forbidden, NotOwner

AuthMethod = Literal["jwt", "api_key", "bootstrap_key", "local"]


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    username: str
    is_admin: bool
    method: AuthMethod

    @classmethod
    def local_operator(cls) -> Principal:
        """Whoever runs the CLI on the database directly: it already holds every right."""
        return cls(user_id=uuid.UUID(int=0), username="cli", is_admin=True, method="local")

    def can_access(self, owner_id: uuid.UUID) -> bool:
        return self.is_admin or self.user_id == owner_id

    def ensure_can_access(self, owner_id: uuid.UUID, what: str) -> None:
        """Raise ``Forbidden`` unless this principal owns the resource or is an admin."""
        if not self.can_access(owner_id):
            raise NotOwner(f"You do not have access to this {what}")

    def ensure_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("Admin rights required")
