"""Limits kept in this process: a dict of buckets, a dict of connections."""

from __future__ import annotations

from collections import deque

from hubbub.clock import Clock
from hubbub.limits.base import PENDING_TTL, Rate, Taken, grant, refill

PRUNE_AT = 10_000
"""Buckets kept before the full ones (idle long enough to refill) are dropped."""


class MemoryLimiter:
    immediate = True

    def __init__(self, clock: Clock, pending_ttl: float = PENDING_TTL) -> None:
        self._clock = clock
        self._pending_ttl = pending_ttl
        # key -> (tokens, at, when full again): a full bucket is as good as none.
        self._buckets: dict[str, tuple[float, float, float]] = {}
        self._prune_at = PRUNE_AT
        self._live: dict[str, set[str]] = {}
        self._pending: dict[str, deque[float]] = {}  # user -> reservations' deadlines

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def take_now(self, key: str, n: int, rate: Rate) -> Taken:
        now = self._clock.monotonic()
        state = self._buckets.get(key)
        tokens = float(rate.burst) if state is None else refill(state[0], now - state[1], rate)
        left, taken = grant(tokens, n, rate)
        self._buckets[key] = (left, now, now + (rate.burst - left) / rate.per_second)
        if len(self._buckets) > self._prune_at:
            self._prune(now)
        return taken

    async def take(self, key: str, n: int, rate: Rate) -> Taken:
        return self.take_now(key, n, rate)

    def _prune(self, now: float) -> None:
        self._buckets = {k: v for k, v in self._buckets.items() if v[2] > now}
        self._prune_at = max(PRUNE_AT, 2 * len(self._buckets))

    def _reserved(self, user: str, now: float) -> deque[float] | None:
        pending = self._pending.get(user)
        if pending is not None:
            while pending and pending[0] <= now:
                pending.popleft()
            if not pending:
                del self._pending[user]
                return None
        return pending

    def enter_now(self, user: str, most: int) -> bool:
        now = self._clock.monotonic()
        pending = self._reserved(user, now)
        if len(self._live.get(user, ())) + (len(pending) if pending else 0) >= most:
            return False
        if pending is None:
            pending = self._pending[user] = deque()
        pending.append(now + self._pending_ttl)
        return True

    async def enter(self, user: str, most: int) -> bool:
        return self.enter_now(user, most)

    def opened(self, user: str, connection_id: str) -> None:
        pending = self._reserved(user, self._clock.monotonic())
        if pending:
            pending.popleft()
            if not pending:
                del self._pending[user]
        self._live.setdefault(user, set()).add(connection_id)

    def closed(self, user: str, connection_id: str) -> None:
        live = self._live.get(user)
        if live is not None:
            live.discard(connection_id)
            if not live:
                del self._live[user]

    async def connections(self, user: str) -> int:
        pending = self._reserved(user, self._clock.monotonic())
        return len(self._live.get(user, ())) + (len(pending) if pending else 0)
