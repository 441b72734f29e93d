"""Presence across processes in Redis, with keys that expire with their process.

- ``hubbub:presence:{user}``: the set of processes serving the user;
- ``hubbub:proc-users:{pid}``: the users a process serves;
- ``hubbub:proc:{pid}``: the process's heartbeat, a key with a TTL that the
  process refreshes every ``ttl / 3`` seconds;
- ``hubbub:procs``: every process that has announced itself;
- ``hubbub:presence-status``: a channel carrying each announced change to
  every process (``redis_status.py``).

A process whose heartbeat expired is dead: the first live process to notice
(every ``ttl / 3`` seconds, under a short lock) removes it from its users'
sets and reports the users it left offline, who are then announced offline.
So a killed process takes its users offline within ``ttl + ttl / 3`` seconds,
with nobody cleaning up by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hubbub.ids import new_id
from hubbub.presence.base import Expired, Status
from hubbub.presence.redis_status import StatusChannel
from hubbub.tasks import STOP_WAIT, cancel_and_wait

log = logging.getLogger("hubbub.presence")
PREFIX = "hubbub:"


class RedisPresence:
    def __init__(self, url: str, ttl: float = 15.0, prefix: str = PREFIX) -> None:
        self.url = url
        self.ttl = ttl
        self.prefix = prefix
        self.pid = new_id("p")
        self._client = aioredis.from_url(url)
        self._expired: list[Expired] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._status = StatusChannel(url, self._key("presence-status"), self.pid)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def start(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._beat()
        self._task = asyncio.create_task(self._loop(), name="hubbub-presence")
        await self._status.start()

    async def stop(self) -> None:
        await self._status.stop()
        self._stopping = True  # the heartbeat ends on it, should a cancellation be swallowed
        await cancel_and_wait([] if self._task is None else [self._task])
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            # A clean stop ends the heartbeat now: a live process reaps this one
            # within ttl / 3 seconds and announces its users offline.
            await asyncio.wait_for(self._client.delete(self._key("proc", self.pid)), STOP_WAIT)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self._client.aclose(), STOP_WAIT)

    def on_expired(self, callback: Expired) -> None:
        self._expired.append(callback)

    def publish(self, user: str, status: str, at_ms: int) -> None:
        self._status.publish(user, status, at_ms)

    def on_status(self, callback: Status) -> None:
        self._status.on_status(callback)

    async def came_online(self, user: str) -> bool:
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.sadd(self._key("presence", user), self.pid)
                pipe.sadd(self._key("proc-users", self.pid), user)
                pipe.smembers(self._key("presence", user))
                added, _, serving = await pipe.execute()
            # The heartbeats are read in the same try: Redis can go away between.
            return bool(added) and await self._live(serving) == {self.pid}
        except (RedisError, OSError) as exc:
            log.warning("presence not recorded for %s: %s", user, exc)
            return True

    async def went_offline(self, user: str) -> bool:
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.srem(self._key("presence", user), self.pid)
                pipe.srem(self._key("proc-users", self.pid), user)
                pipe.smembers(self._key("presence", user))
                _, _, serving = await pipe.execute()
            return not await self._live(serving)
        except (RedisError, OSError) as exc:
            log.warning("presence not cleared for %s: %s", user, exc)
            return True

    async def online(self, users: list[str]) -> set[str]:
        if not users:
            return set()
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for user in users:
                    pipe.smembers(self._key("presence", user))
                found: list[set[bytes]] = await pipe.execute()
            # One look at the heartbeats of every process named, not one per user.
            live = await self._live(set().union(*found))
        except (RedisError, OSError) as exc:
            log.warning("presence lookup failed: %s", exc)
            return set()  # unknown reads as offline until Redis is back
        return {
            user
            for user, serving in zip(users, found, strict=True)
            if any(_text(p) in live for p in serving)
        }

    async def _live(self, pids: set[bytes]) -> set[str]:
        names = [_text(p) for p in pids]
        if not names:
            return set()
        if names == [self.pid]:
            return {self.pid}
        beats = await self._client.mget([self._key("proc", p) for p in names])
        return {p for p, beat in zip(names, beats, strict=True) if p == self.pid or beat}

    async def census(self) -> tuple[int, int]:
        """``(live processes, users online in any of them)``, counted in Redis."""
        names = [_text(p) for p in await self._client.smembers(self._key("procs"))]
        beats = await self._client.mget([self._key("proc", p) for p in names]) if names else []
        live = [p for p, beat in zip(names, beats, strict=True) if beat or p == self.pid]
        if not live:
            return 0, 0
        scratch = self._key("census", new_id("t"))
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.sunionstore(scratch, [self._key("proc-users", p) for p in live])
            pipe.delete(scratch)
            users, _ = await pipe.execute()
        return len(live), int(users)

    async def _beat(self) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(self._key("proc", self.pid), b"1", px=int(self.ttl * 1000))
            pipe.sadd(self._key("procs"), self.pid)
            await pipe.execute()

    async def _loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self._beat()
                await self._reap_dead()
            except (RedisError, OSError) as exc:
                log.warning("presence heartbeat failed: %s", exc)

    async def _reap_dead(self) -> None:
        for raw in await self._client.smembers(self._key("procs")):
            pid = _text(raw)
            if pid == self.pid or await self._client.exists(self._key("proc", pid)):
                continue
            if await self._client.set(self._key("reap", pid), b"1", nx=True, ex=30):
                left = await self._reap(pid)
                if left:
                    log.info("process %s is gone; %d users offline", pid, len(left))
                    for callback in self._expired:
                        callback(left)

    async def _reap(self, pid: str) -> list[str]:
        """Remove a process from its users' sets; return the users now offline."""
        users = [_text(u) for u in await self._client.smembers(self._key("proc-users", pid))]
        left = []
        for user in users:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.srem(self._key("presence", user), pid)
                pipe.smembers(self._key("presence", user))
                _, serving = await pipe.execute()
            if not await self._live({s for s in serving if _text(s) != pid}):
                left.append(user)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self._key("proc-users", pid), self._key("proc", pid))
            pipe.srem(self._key("procs"), pid)
            await pipe.execute()
        return left


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
