"""JWT verification and (for local testing) minting.

Tokens come from the app's own backend (HS256 with ``HUBBUB_JWT_SECRET``) or
from an identity provider (RS256, ES256, ... with ``HUBBUB_JWT_PUBLIC_KEY``,
or the provider's key set at ``HUBBUB_JWKS_URL``, see ``keys.py``). Claims:
the user id (``sub``, or ``HUBBUB_JWT_USER_CLAIM``; required), ``exp``
(required), the display name (``name``, or ``HUBBUB_JWT_NAME_CLAIM``;
optional), and ``aud`` and ``iss``, checked when ``HUBBUB_JWT_AUDIENCE`` and
``HUBBUB_JWT_ISSUER`` are set.

Whatever is wrong with a token, whatever its header names, verifying it
raises ``Unauthorized``; only a key set that cannot be fetched when the token
needs it raises ``Unavailable`` (the token may well be good).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from hubbub.clock import Clock, SystemClock
from hubbub.config import ConfigError, Settings
from hubbub.errors import Unauthorized, Unavailable
from hubbub.keys import KeySet, PublicKey, load_pem

if TYPE_CHECKING:
    from jwt.types import Options

MAX_USER_ID = 128
MAX_NAME = 200
MAX_TOKEN_CHARS = 16 * 1024
RESERVED_USERS = frozenset({"system"})
"""Ids no token may carry: ``system`` is the sender of the app backend's messages."""
MAX_TIMESTAMP = 253_402_300_799
"""The last second of the year 9999: a later ``exp``, ``nbf`` or ``iat`` is refused."""
BAD_SIGNATURE = "invalid token: signature verification failed"
CLOCK_SKEW = 60.0
"""Seconds an ``nbf`` may lie ahead (the issuer's clock may run ahead of this one)."""


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    name: str | None
    expires_at: float


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name; a dotted name reaches into objects when no claim has that name."""
    if name in claims or "." not in name:
        return claims.get(name)
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _timestamp(claims: Mapping[str, Any], name: str) -> float | None:
    """A time claim: seconds since the epoch, a finite number in range, or absent."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized(f"claim {name!r} must be a number (seconds since the epoch)")
    if not 0 <= value <= MAX_TIMESTAMP:  # also false for NaN
        raise Unauthorized(f"claim {name!r} is out of range")
    return float(value)


def _text(value: Any, what: str, longest: int, *, empty: bool) -> str:
    if not isinstance(value, str) or len(value) > longest or (not value and not empty):
        least = 0 if empty else 1
        raise Unauthorized(f"claim {what!r} must be a string of {least} to {longest} characters")
    if "\0" in value:
        raise Unauthorized(f"claim {what!r} must not contain NUL")
    return value


class TokenVerifier:
    """Checks tokens against the configured secret, public key or key set.

    ``check`` answers at once when the keys at hand decide; ``verify`` also
    fetches the key set when a token needs a key it does not hold yet.
    """

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        accepted = settings.jwt_algorithms
        self._secret = settings.jwt_secret
        hmac = frozenset(a for a in accepted if a.startswith("HS"))
        self._hmac = hmac if self._secret else frozenset()
        public = tuple(a for a in accepted if not a.startswith("HS"))
        self._static = (
            load_pem(settings.jwt_public_key, public)
            if settings.jwt_public_key and public
            else None
        )
        self.jwks = (
            KeySet(settings.jwks_url, public, self._clock) if settings.jwks_url and public else None
        )
        self._accepted = self._hmac.union(
            self._static.algorithms if self._static else (),
            public if self.jwks else (),
        )
        if not self._accepted:
            raise ConfigError(
                "no key for HUBBUB_JWT_ALGORITHMS: HS* need HUBBUB_JWT_SECRET, the others"
                " HUBBUB_JWT_PUBLIC_KEY or HUBBUB_JWKS_URL"
            )
        self._audience = list(settings.jwt_audience) or None
        self._issuer = list(settings.jwt_issuer) or None
        self._user_claim = settings.jwt_user_claim
        self._name_claim = settings.jwt_name_claim
        self._options: Options = {
            # Times are checked here (_identity), as numbers in range.
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_sub": False,
            "verify_aud": self._audience is not None,
            "verify_iss": self._issuer is not None,
        }

    def start(self) -> None:
        """Begin fetching the key set, if there is one (on the running loop)."""
        if self.jwks is not None:
            self.jwks.start()

    async def close(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()

    def check(self, token: str | None) -> Identity | None:
        """The token's identity, or None when the key set must be fetched first (``verify``)."""
        alg, kid = self._header(token)
        keys = self._keys(alg, kid, fetch=True)
        if keys is None:
            return None
        identity = self._decode(token or "", alg, keys)
        if identity is None:
            if self._rotated(alg, kid):
                return None
            raise Unauthorized(BAD_SIGNATURE)
        return identity

    async def verify(self, token: str | None) -> Identity:
        alg, kid = self._header(token)
        keys = self._keys(alg, kid, fetch=True)
        identity = None if keys is None else self._decode(token or "", alg, keys)
        if identity is None and (keys is None or self._rotated(alg, kid)):
            assert self.jwks is not None
            await self.jwks.refresh()
            keys = self._keys(alg, kid, fetch=False)
            assert keys is not None
            identity = self._decode(token or "", alg, keys)
        if identity is None:
            raise Unauthorized(BAD_SIGNATURE)
        return identity

    def _rotated(self, alg: str, kid: str | None) -> bool:
        """Whether to fetch the set for a token without ``kid`` that none of its keys verify."""
        jwks = self.jwks
        return (
            kid is None
            and jwks is not None
            and self._static is None
            and alg not in self._hmac
            and (jwks.fetching or jwks.may_fetch())
        )

    def _header(self, token: str | None) -> tuple[str, str | None]:
        if not token:
            raise Unauthorized("missing token")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized(f"token longer than {MAX_TOKEN_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
        except Exception:  # whatever a hostile header makes the parser raise
            raise Unauthorized("malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self._accepted:
            shown = alg if isinstance(alg, str | None) else type(alg).__name__
            raise Unauthorized(f"token algorithm {shown!r} is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise Unauthorized("token header 'kid' must be a string")
        return alg, kid

    def _keys(self, alg: str, kid: str | None, fetch: bool) -> list[str | PublicKey] | None:
        """The keys to try; None when the key set should be fetched first (if ``fetch``)."""
        if alg in self._hmac:
            assert self._secret is not None
            return [self._secret]
        if self._static is not None:
            return [self._static.key]  # _accepted holds only the algorithms that fit it
        jwks = self.jwks
        assert jwks is not None
        found = jwks.find(kid, alg)
        if found:
            jwks.renew_if_old()
            return [k.key for k in found]
        if kid is not None and jwks.holds(kid):
            raise Unauthorized(f"key {kid!r} of HUBBUB_JWKS_URL is not for {alg}")
        if fetch and (jwks.fetching or jwks.may_fetch()):
            return None
        if jwks.error is not None:
            raise Unavailable(
                f"the keys at HUBBUB_JWKS_URL could not be fetched ({jwks.error}); retry later"
            )
        if kid is None:
            raise Unauthorized(f"no key of HUBBUB_JWKS_URL is for {alg}")
        raise Unauthorized(f"no key {kid!r} at HUBBUB_JWKS_URL")

    def _decode(self, token: str, alg: str, keys: list[str | PublicKey]) -> Identity | None:
        """The token's identity; None when none of the keys verifies its signature."""
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self._audience,
                    issuer=self._issuer,
                    options=self._options,
                )
            except jwt.InvalidSignatureError:
                continue  # another key of the set may have signed it
            except jwt.InvalidAudienceError:
                raise Unauthorized("token audience ('aud') is not HUBBUB_JWT_AUDIENCE") from None
            except jwt.InvalidIssuerError:
                raise Unauthorized("token issuer ('iss') is not HUBBUB_JWT_ISSUER") from None
            except jwt.MissingRequiredClaimError as exc:
                raise Unauthorized(f"claim {exc.claim!r} is required") from None
            except Exception as exc:  # whatever a hostile token makes the decoder raise
                raise Unauthorized(f"invalid token: {exc}") from None
            return self._identity(claims)
        return None

    def _identity(self, claims: dict[str, Any]) -> Identity:
        expires = _timestamp(claims, "exp")
        if expires is None:
            raise Unauthorized("claim 'exp' is required")
        not_before = _timestamp(claims, "nbf")
        _timestamp(claims, "iat")
        now = self._clock.now()
        if expires <= now:
            raise Unauthorized("token expired")
        if not_before is not None and not_before > now + CLOCK_SKEW:
            raise Unauthorized("token not valid yet ('nbf')")
        user = claim(claims, self._user_claim)
        if user is None:
            raise Unauthorized(f"claim {self._user_claim!r} is required")
        user_id = _text(user, self._user_claim, MAX_USER_ID, empty=False)
        if user_id in RESERVED_USERS:
            raise Unauthorized(f"user id {user_id!r} is reserved")
        name = claim(claims, self._name_claim)
        if name is not None:
            name = _text(name, self._name_claim, MAX_NAME, empty=True)
        return Identity(user_id=user_id, name=name or None, expires_at=expires)


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
