"""Public keys that verify tokens: one given as PEM, or a set fetched from a JWKS URL.

``KeySet`` is an identity provider's key set (``HUBBUB_JWKS_URL``), fetched
over HTTP without blocking the event loop and kept in memory. A token naming
a ``kid`` the set does not hold has the set fetched again, at most once per
``REFETCH_INTERVAL``, so a provider's key rotation needs no restart; a set
older than ``MAX_AGE`` is fetched again in the background while the one held
goes on verifying tokens. Callers arriving while a fetch runs share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from hubbub.clock import Clock
from hubbub.config import ConfigError

log = logging.getLogger("hubbub.auth")

REFETCH_INTERVAL = 30.0
"""Seconds, at least, between two fetches of a key set, whatever asks for them."""
MAX_AGE = 300.0
"""Seconds a fetched key set is used before it is fetched again (in the background)."""
FETCH_TIMEOUT = 5.0
"""Seconds a fetch of the key set may take, connecting included."""
MAX_SET_BYTES = 256 * 1024
MAX_KEYS = 100

PublicKey: TypeAlias = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

_RSA = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_CURVES: dict[str, frozenset[str]] = {
    "secp256r1": frozenset({"ES256"}),
    "secp384r1": frozenset({"ES384"}),
    "secp521r1": frozenset({"ES512"}),
    "secp256k1": frozenset({"ES256K"}),
}
_EDDSA = frozenset({"EdDSA"})


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """A public key, the algorithms it may verify, and its ``kid`` in a key set."""

    key: PublicKey
    algorithms: frozenset[str]
    kid: str | None = None


def algorithms_for(key: PublicKey) -> frozenset[str]:
    """The JWT algorithms a key of this type and curve verifies."""
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _CURVES.get(key.curve.name, frozenset())
    return _EDDSA


def load_pem(text: str, accepted: Iterable[str]) -> VerifyingKey:
    """``HUBBUB_JWT_PUBLIC_KEY``: a PEM public key or certificate."""
    data = text.strip().encode()
    try:
        if data.startswith(b"-----BEGIN CERTIFICATE"):
            loaded: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            loaded = load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"HUBBUB_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from None
    if not isinstance(loaded, PublicKey):
        raise ConfigError(f"HUBBUB_JWT_PUBLIC_KEY: {type(loaded).__name__} keys are not supported")
    fits = algorithms_for(loaded) & frozenset(accepted)
    if not fits:
        raise ConfigError(
            f"HUBBUB_JWT_PUBLIC_KEY: none of HUBBUB_JWT_ALGORITHMS ({', '.join(accepted)}) "
            "fits this key"
        )
    return VerifyingKey(loaded, fits)


def _public(key: Any) -> PublicKey | None:
    if isinstance(key, PublicKey):
        return key
    if isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        return key.public_key()
    return None


def _from_jwk(kty: str, jwk: dict[str, Any]) -> Any:
    if kty == "RSA":
        return RSAAlgorithm.from_jwk(jwk)
    if kty == "EC":
        return ECAlgorithm.from_jwk(jwk)
    return OKPAlgorithm.from_jwk(jwk)


def parse_jwks(body: bytes, accepted: Iterable[str]) -> tuple[VerifyingKey, ...]:
    """The signing keys of a JWKS document that fit the accepted algorithms.

    Keys for encryption (``use`` other than ``sig``), of other types
    (symmetric ones included) and those that do not parse are left out.
    Raises ``ValueError`` for a document that is not a key set.
    """
    try:
        document = json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    allowed = frozenset(accepted)
    found: list[VerifyingKey] = []
    for jwk in document["keys"][:MAX_KEYS]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        kty = jwk.get("kty")
        if kty not in ("RSA", "EC", "OKP"):
            continue
        try:
            key = _public(_from_jwk(kty, jwk))
        except Exception as exc:  # a key that does not parse is left out, not the set
            log.debug("JWKS key %r left out: %s", kid, exc)
            continue
        if key is None:
            continue
        fits = algorithms_for(key) & allowed
        alg = jwk.get("alg")
        if isinstance(alg, str):
            fits &= {alg}
        if fits:
            found.append(VerifyingKey(key, fits, kid))
    return tuple(found)


class KeySet:
    """The signing keys published at a JWKS URL, fetched when needed."""

    def __init__(
        self,
        url: str,
        algorithms: Iterable[str],
        clock: Clock,
        *,
        refetch_interval: float = REFETCH_INTERVAL,
        max_age: float = MAX_AGE,
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self.url = url
        self.algorithms = tuple(algorithms)
        self.clock = clock
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self.timeout = timeout
        self.keys: tuple[VerifyingKey, ...] = ()
        self.error: str | None = "not fetched yet"
        """Why the last fetch failed; None when it succeeded."""
        self.fetches = 0
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._fetching: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def find(self, kid: str | None, alg: str) -> list[VerifyingKey]:
        """The keys that may verify a token of this ``kid`` (any, if None) and algorithm."""
        return [k for k in self.keys if alg in k.algorithms and (kid is None or k.kid == kid)]

    def holds(self, kid: str) -> bool:
        return any(k.kid == kid for k in self.keys)

    def may_fetch(self) -> bool:
        """Whether ``REFETCH_INTERVAL`` has passed since the last fetch began."""
        tried = self._tried_at
        return tried is None or self.clock.monotonic() - tried >= self.refetch_interval

    @property
    def fetching(self) -> bool:
        return self._fetching is not None

    def renew_if_old(self) -> None:
        """Start fetching in the background when the set is older than ``MAX_AGE``."""
        fetched = self._fetched_at
        old = fetched is None or self.clock.monotonic() - fetched >= self.max_age
        if old and self._fetching is None and self.may_fetch():
            self.start()

    def start(self) -> None:
        """Begin a fetch unless one runs (it goes on without anyone waiting for it)."""
        if self._fetching is None:
            self._tried_at = self.clock.monotonic()
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())

    async def refresh(self) -> None:
        """Fetch the set (or wait for the fetch under way); never raises for a failed fetch."""
        self.start()
        task = self._fetching
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        if self._fetching is not None:
            self._fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetching
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            async with asyncio.timeout(self.timeout):
                body = await self._download()
            keys = parse_jwks(body, self.algorithms)
        except Exception as exc:  # whatever the fetch met, the tokens it was for get an answer
            self.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("could not fetch the JWKS at %s: %s", self.url, self.error)
        else:
            if not keys:
                log.warning(
                    "the JWKS at %s has no key for %s", self.url, ", ".join(self.algorithms)
                )
            kids = {k.kid for k in keys} - {k.kid for k in self.keys}
            if kids and self.keys:
                log.info("JWKS at %s: new key ids %s", self.url, sorted(map(str, kids)))
            self.keys = keys
            self.error = None
            self._fetched_at = self.clock.monotonic()
        finally:
            self._fetching = None

    async def _download(self) -> bytes:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=True)
        async with self._client.stream(
            "GET", self.url, headers={"Accept": "application/json"}
        ) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_SET_BYTES:
                    raise ValueError(f"larger than {MAX_SET_BYTES} bytes")
            return bytes(body)
