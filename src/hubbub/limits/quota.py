"""The limits as the services and the gateway apply them, over a ``Limiter``.

- ``sends``: the send bucket of a user (``send:{user}``), or the one bucket
  of the API key (``send-server``), which by default is no limit;
- ``knock``: the connect bucket of a client address (``ip:{address}``);
- ``enter``, ``opened``, ``closed``: the user's connections.
"""

from __future__ import annotations

import math

from hubbub.errors import RateLimited
from hubbub.limits.base import Limiter, Taken
from hubbub.limits.settings import Quotas

SERVER_BUCKET = "send-server"


class TooManyConnections(RateLimited):
    """The user already has its most connections open (HTTP 429 on the handshake)."""

    code = "too_many_connections"


def retry_after(error: BaseException) -> dict[str, str]:
    """The ``Retry-After`` header (whole seconds, rounded up) a refusal carries, if any."""
    ms = getattr(error, "retry_after_ms", None)
    if not isinstance(ms, int) or ms <= 0:
        return {}
    return {"Retry-After": str(max(1, math.ceil(ms / 1000)))}


def client_address(peer: str | None, forwarded: list[str], header: str | None) -> str:
    """The client's address: the right-most value of the trusted header, else the peer.

    ``forwarded`` holds every value of that header in the request, in order;
    a proxy appends the address it saw to the end.
    """
    if header is not None:
        values = [v.strip() for line in forwarded for v in line.split(",") if v.strip()]
        if values:
            return values[-1]
    return peer or "unknown"


class Quota:
    def __init__(self, limiter: Limiter, quotas: Quotas) -> None:
        self.limiter = limiter
        self.quotas = quotas
        self._send = quotas.send
        self._server = quotas.send_server
        self._connect = quotas.connect
        self._most = quotas.max_connections_per_user

    @property
    def immediate(self) -> bool:
        """True when every check answers at once (no round trip to wait for)."""
        return self.limiter.immediate

    # Sending -----------------------------------------------------------------

    async def sends(self, user: str, n: int, by_key: bool = False) -> Taken:
        """Tokens for ``n`` sends of ``user`` (``by_key``: the API key sends them)."""
        rate = self._server if by_key else self._send
        if rate.unlimited:
            return Taken(n)
        key = SERVER_BUCKET if by_key else "send:" + user
        taken = self.limiter.take_now(key, n, rate)
        return taken if taken is not None else await self.limiter.take(key, n, rate)

    # Connecting --------------------------------------------------------------

    def knock_now(self, address: str) -> bool:
        """Check a new session from ``address``; False when it must be awaited (``knock``).

        Raises ``RateLimited`` beyond the connect rate.
        """
        if self._connect.unlimited:
            return True
        taken = self.limiter.take_now("ip:" + address, 1, self._connect)
        if taken is None:
            return False
        self._knocked(taken)
        return True

    async def knock(self, address: str) -> None:
        if not self._connect.unlimited:
            self._knocked(await self.limiter.take("ip:" + address, 1, self._connect))

    def _knocked(self, taken: Taken) -> None:
        if not taken.granted:
            raise RateLimited(
                "too many new connections from this address: retry later",
                retry_after_ms=taken.retry_after_ms,
            )

    def enter_now(self, user: str) -> bool:
        """Reserve a place for a new session of ``user``; False when it must be awaited.

        Raises ``TooManyConnections`` when the user has its most already.
        """
        if not self._most:
            return True
        entered = self.limiter.enter_now(user, self._most)
        if entered is None:
            return False
        self._entered(entered)
        return True

    async def enter(self, user: str) -> None:
        if self._most:
            self._entered(await self.limiter.enter(user, self._most))

    def _entered(self, entered: bool) -> None:
        if not entered:
            raise TooManyConnections(f"at most {self._most} connections per user: close one first")

    def opened(self, user: str, connection_id: str) -> None:
        if self._most:
            self.limiter.opened(user, connection_id)

    def closed(self, user: str, connection_id: str) -> None:
        if self._most:
            self.limiter.closed(user, connection_id)
