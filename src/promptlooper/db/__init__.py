"""Database plumbing: the declarative Base, portable column types, engine and sessions."""

from promptlooper.db.base import Base, TimestampMixin, UUIDPrimaryKeyMixin, utcnow
from promptlooper.db.engine import create_engine, create_sessionmaker
from promptlooper.db.types import JSONType, UTCDateTime

__all__ = [
    "Base",
    "JSONType",
    "TimestampMixin",
    "UTCDateTime",
    "UUIDPrimaryKeyMixin",
    "create_engine",
    "create_sessionmaker",
    "utcnow",
]
