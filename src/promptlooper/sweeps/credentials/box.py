"""Sealing credentials at rest with Fernet (AES-128-CBC with an HMAC-SHA256 tag).

The keys come from ``CREDENTIALS_KEY`` or a file generated once under ``DATA_DIR``; they are
read, and ``cryptography`` is loaded, only when a credential is first sealed or opened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet


class SecretBox:
    """Seals with the first key and opens with any, so a key can be rotated: put the new key
    first, and credentials sealed with the old one still open until they are set again."""

    def __init__(self, keys: Callable[[], Sequence[str]]) -> None:
        self._keys = keys
        self._fernet: MultiFernet | None = None
        self._lock = threading.Lock()

    def _box(self) -> MultiFernet:
        with self._lock:
            if self._fernet is None:
                from cryptography.fernet import Fernet, MultiFernet

                self._fernet = MultiFernet([Fernet(key) for key in self._keys()])
            return self._fernet

    def seal(self, secret: str) -> str:
        return self._box().encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str | None:
        """The secret, or None when none of the keys sealed it (the key was replaced)."""
        from cryptography.fernet import InvalidToken

        try:
            return self._box().decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None
