"""The SDK's one error type."""

from __future__ import annotations


class APIError(Exception):
    """The server refused a request (``status_code`` and its ``detail``), or could not be
    reached (``status_code`` None)."""

    def __init__(self, status_code: int | None, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}" if status_code else detail)
        self.status_code = status_code
        self.detail = detail
