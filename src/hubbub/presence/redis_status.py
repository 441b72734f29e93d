"""Presence changes carried to every process over one Redis channel.

``hubbub:presence-status`` carries ``(pid, [(user, status, at_ms), ...])``:
the changes a process published in one event-loop pass, in one message. The
publishing process hands its own changes to its callbacks at once and skips
them when they come back. Changes are notifications, like the broker's: one
lost while Redis is away is lost (a subscriber reads the current state again
when it subscribes, and the next change corrects it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hubbub.presence.base import Status

log = logging.getLogger("hubbub.presence")
BATCH = 500  # changes per message
BACKOFF_MAX = 2.0
STOP_TIMEOUT = 2.0

Change = tuple[str, str, int]


class StatusChannel:
    def __init__(self, url: str, channel: str, pid: str) -> None:
        self.url = url
        self.channel = channel
        self.pid = pid
        self._callbacks: list[Status] = []
        self._outbox: list[Change] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(tuple[str, list[Change]])
        self.subscribed = asyncio.Event()
        self._closing = False

    def on_status(self, callback: Status) -> None:
        self._callbacks.append(callback)

    def publish(self, user: str, status: str, at_ms: int) -> None:
        self._deliver([(user, status, at_ms)])
        self._outbox.append((user, status, at_ms))
        self._wake.set()

    def _deliver(self, changes: list[Change]) -> None:
        for user, status, at_ms in changes:
            for callback in self._callbacks:
                try:
                    callback(user, status, at_ms)
                except Exception:
                    log.exception("a presence change could not be handled")

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="hubbub-presence-publish"),
            asyncio.create_task(self._listen(), name="hubbub-presence-listen"),
        ]
        # The first changes of this process reach processes that already listen.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), 2.0)

    async def stop(self) -> None:
        self._closing = True
        self._wake.set()  # the publisher sends what waits, then ends
        for task in self._tasks[1:]:
            task.cancel()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in late:
                task.cancel()

    async def _publish_loop(self) -> None:
        client = aioredis.from_url(self.url)
        backoff = 0.1
        try:
            while not self._closing or self._outbox:
                await self._wake.wait()
                self._wake.clear()
                changes, self._outbox = self._outbox, []
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        for start in range(0, len(changes), BATCH):
                            batch = changes[start : start + BATCH]
                            pipe.publish(self.channel, self._encoder.encode((self.pid, batch)))
                        await pipe.execute()
                    backoff = 0.1
                except (RedisError, OSError) as exc:
                    log.warning("presence changes not relayed (%d): %s", len(changes), exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            await client.aclose()

    async def _listen(self) -> None:
        backoff = 0.1
        while not self._closing:
            client = aioredis.from_url(self.url, health_check_interval=5)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.subscribed.set()
                    backoff = 0.1
                    while not self._closing:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None:
                            self._receive(message["data"])
            except (RedisError, OSError) as exc:
                log.warning("presence channel lost: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _receive(self, data: bytes) -> None:
        try:
            origin, changes = self._decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("ignored a malformed presence change")
            return
        if origin != self.pid:  # this process's own went to its callbacks at once
            self._deliver(changes)
