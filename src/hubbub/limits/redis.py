"""Limits in Redis, shared by every process of a cluster.

Under ``{prefix}limits:``:

- ``bucket:{key}``: a hash of ``tokens`` and ``at`` (Redis's clock), taken
  from and refilled atomically by one Lua script, expiring once it would be
  full again;
- ``conns:{user}``: a sorted set of the user's connections, each scored with
  the time its entry lapses. A process refreshes its own entries every
  ``ttl / 3`` seconds, so the connections of a process that died stop
  counting within ``ttl`` seconds. A reservation (``enter``) is an entry of
  ``PENDING_TTL`` seconds, replaced by the connection's own when its session
  opens.

Every script reads Redis's clock (``TIME``), so processes whose clocks differ
share the same buckets. When Redis does not answer, every limit lets the
request through (fail open): logged once per outage, and again when Redis
answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hubbub.ids import new_id
from hubbub.limits.base import PENDING_TTL, Rate, Taken

log = logging.getLogger("hubbub.limits")
TIMEOUT = 1.0
"""Seconds a limit waits for Redis before letting the request through."""

TAKE = """
local rate, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(s[1]), tonumber(s[2])
if tokens == nil or at == nil then
  tokens = burst
elseif now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
end
local granted = math.min(n, math.floor(tokens + 1e-9))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
local wait = 0
if granted < n then wait = math.max(1, math.ceil((1 - tokens) / rate * 1000)) end
return {granted, wait}
"""

ENTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""

PUT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[1], ARGV[2]) end
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""

Op = tuple[str, str, str, tuple[str, ...]]  # script ("put" or "rem"), user, removed, added


class RedisLimiter:
    immediate = False

    def __init__(
        self, url: str, ttl: float = 15.0, prefix: str = "hubbub:", pending_ttl: float = PENDING_TTL
    ) -> None:
        self.pending_ms = int(pending_ttl * 1000)
        self.prefix = prefix + "limits:"
        self.ttl_ms = int(ttl * 1000)
        self.pid = new_id("l")
        self._client = aioredis.from_url(
            url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        self._take = self._client.register_script(TAKE)
        self._enter = self._client.register_script(ENTER)
        self._put = self._client.register_script(PUT)
        self._count = self._client.register_script(COUNT)
        self._live: dict[str, set[str]] = {}
        self._pending: dict[str, deque[tuple[str, float]]] = {}  # (member, lapses at)
        self._ops: list[Op] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.down = False

    def _conns(self, user: str) -> str:
        return f"{self.prefix}conns:{user}"

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write(), name="hubbub-limits-writer"),
            asyncio.create_task(self._refresh(), name="hubbub-limits-refresh"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(TimeoutError, RedisError, OSError):
            # A clean stop gives this process's places back at once.
            async with self._client.pipeline(transaction=False) as pipe:
                for user, live in self._live.items():
                    pipe.zrem(self._conns(user), *live)
                for script, user, removed, _ in self._ops:  # closed, not yet written
                    if script == "rem":
                        pipe.zrem(self._conns(user), removed)
                await asyncio.wait_for(pipe.execute(), TIMEOUT)
        await self._client.aclose()

    def _failed(self, what: str, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            log.warning("limits: redis unreachable (%s: %s); letting requests through", what, exc)

    def _answered(self) -> None:
        if self.down:
            self.down = False
            log.warning("limits: redis answers again; limits hold across processes")

    # Buckets -----------------------------------------------------------------

    def take_now(self, key: str, n: int, rate: Rate) -> Taken | None:
        return None

    async def take(self, key: str, n: int, rate: Rate) -> Taken:
        try:
            granted, wait = await self._take(
                keys=[f"{self.prefix}bucket:{key}"], args=[rate.per_second, rate.burst, n]
            )
        except (TimeoutError, RedisError, OSError) as exc:
            self._failed("take", exc)
            return Taken(n)
        self._answered()
        return Taken(int(granted), int(wait))

    # Connections ---------------------------------------------------------------

    def enter_now(self, user: str, most: int) -> bool | None:
        return None

    async def enter(self, user: str, most: int) -> bool:
        member = f"pending:{self.pid}:{new_id('r')}"
        try:
            entered = await self._enter(
                keys=[self._conns(user)], args=[most, member, self.pending_ms]
            )
        except (TimeoutError, RedisError, OSError) as exc:
            self._failed("enter", exc)
            return True
        self._answered()
        if entered:
            lapses = time.monotonic() + self.pending_ms / 1000
            self._pending.setdefault(user, deque()).append((member, lapses))
        return bool(entered)

    def opened(self, user: str, connection_id: str) -> None:
        pending = self._pending.get(user)
        reserved = ""
        if pending:
            now = time.monotonic()
            while pending and not reserved:
                member, lapses = pending.popleft()
                reserved = member if lapses > now else ""
            if not pending:
                del self._pending[user]
        self._live.setdefault(user, set()).add(connection_id)
        self._queue(("put", user, reserved, (connection_id,)))

    def closed(self, user: str, connection_id: str) -> None:
        live = self._live.get(user)
        if live is None or connection_id not in live:
            return
        live.discard(connection_id)
        if not live:
            del self._live[user]
        self._queue(("rem", user, connection_id, ()))

    async def connections(self, user: str) -> int:
        return int(await self._count(keys=[self._conns(user)]))

    def _queue(self, op: Op) -> None:
        self._ops.append(op)
        self._wake.set()

    async def _write(self) -> None:
        """Apply the queued changes in order, pipelined, one batch at a time."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            ops, self._ops = self._ops, []
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for script, user, removed, added in ops:
                        if script == "put":
                            await self._put(
                                keys=[self._conns(user)],
                                args=[self.ttl_ms, removed, *added],
                                client=pipe,
                            )
                        else:
                            pipe.zrem(self._conns(user), removed)
                    await pipe.execute()
            except (TimeoutError, RedisError, OSError) as exc:
                self._failed("record connections", exc)
            except Exception:  # the writer must outlive any one batch
                log.exception("limits: could not record connections")
            else:
                self._answered()

    async def _refresh(self) -> None:
        """Every ttl / 3: this process's connections, alive for another ttl."""
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            for user, live in list(self._live.items()):
                self._ops.append(("put", user, "", tuple(live)))
            self._wake.set()
            now = time.monotonic()  # reservations no session took have lapsed in Redis
            for user, pending in list(self._pending.items()):
                while pending and pending[0][1] <= now:
                    pending.popleft()
                if not pending:
                    del self._pending[user]
