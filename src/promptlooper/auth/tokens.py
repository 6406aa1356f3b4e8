"""JWT access tokens and API-key material.

PyJWT is imported by the two functions that use it: it pulls in ``cryptography`` (~50 ms),
which every CLI command importing the auth service would otherwise pay."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from promptlooper.errors import Unauthenticated

JWT_ALGORITHM = "HS256"
API_KEY_PREFIX = "pl_"
API_KEY_DISPLAY_CHARS = 12


def issue_access_token(user_id: uuid.UUID, secret: str, expire_minutes: int) -> str:
    import jwt

    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + timedelta(minutes=expire_minutes),
        "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def decode_access_token(token: str, secret: str) -> uuid.UUID:
    """The user id in a valid, unexpired token; ``Unauthenticated`` otherwise."""
    import jwt

    try:
        claims = jwt.decode(
            token, secret, algorithms=[JWT_ALGORITHM], options={"require": ["sub", "exp"]}
        )
        if claims.get("typ") != "access":
            raise Unauthenticated("Invalid token")
        return uuid.UUID(claims["sub"])
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("Token has expired") from exc
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise Unauthenticated("Invalid token") from exc


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith(API_KEY_PREFIX)


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_prefix(key: str) -> str:
    return key[:API_KEY_DISPLAY_CHARS]
