"""JWT verification and (for local testing) minting.

Tokens are minted by the app's own backend. Claims: ``sub`` (user id,
required), ``exp`` (required), ``name`` (optional display name).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from hubbub.config import Settings
from hubbub.errors import Unauthorized

MAX_USER_ID = 128
MAX_NAME = 200
RESERVED_USERS = frozenset({"system"})
"""Ids no token may carry: ``system`` is the sender of the app backend's messages."""


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    name: str | None
    expires_at: float


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._keys: list[tuple[Any, list[str]]] = []
        hmac = [a for a in settings.jwt_algorithms if a.startswith("HS")]
        public = [a for a in settings.jwt_algorithms if not a.startswith("HS")]
        if settings.jwt_secret and hmac:
            self._keys.append((settings.jwt_secret, hmac))
        if settings.jwt_public_key and public:
            self._keys.append((settings.jwt_public_key, public))
        if not self._keys:
            raise ValueError("no key configured for the allowed JWT algorithms")

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise Unauthorized("missing token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("malformed token") from None
        alg = header.get("alg")
        match = next(((k, algs) for k, algs in self._keys if alg in algs), None)
        if match is None:
            raise Unauthorized(f"token algorithm {alg!r} is not accepted")
        key, algorithms = match
        try:
            claims = jwt.decode(
                token, key, algorithms=algorithms, options={"require": ["sub", "exp"]}
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub or len(sub) > MAX_USER_ID:
            raise Unauthorized(f"claim 'sub' must be a string of 1 to {MAX_USER_ID} characters")
        if sub in RESERVED_USERS:
            raise Unauthorized(f"user id {sub!r} is reserved")
        name = claims.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
            raise Unauthorized(f"claim 'name' must be a string of at most {MAX_NAME} characters")
        return Identity(user_id=sub, name=name or None, expires_at=float(claims["exp"]))


def mint_token(
    secret: str,
    user_id: str,
    *,
    name: str | None = None,
    ttl: float = 3600,
    now: float | None = None,
) -> str:
    """An HS256 token for local testing (``hubbub token``)."""
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": user_id, "iat": int(issued), "exp": int(issued + ttl)}
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm="HS256")
