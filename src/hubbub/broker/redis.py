"""The scale-out broker: Redis pub/sub between hubbub processes.

Every process publishes committed events on one channel and subscribes to it;
each keeps the events some local connection needs (the hub filters by
recipient). Each process also listens on a channel of its own, which carries
commands posted to another process for an HTTP-stream session it holds
(``relay``). Local recipients are served at once, without a round trip
through Redis, so a Redis outage leaves every process serving its own
connections. Events published while Redis is away are lost to the other
processes; the database has them, and on reconnect each process catches up
from it and tells its clients to ``resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hubbub.broker.base import Delivery, Handler, Relayed, RelayHandler
from hubbub.errors import Unavailable
from hubbub.ids import new_id

log = logging.getLogger("hubbub.broker")

CHANNEL = "hubbub:events"
OUTBOX = 10_000
BATCH = 256
BACKOFF_MAX = 2.0

Envelope = tuple[str, str, int, tuple[str, ...], bytes]
NODE_NAME = re.compile(r"p_[0-9a-f]{27}")
RELAY_TIMEOUT = 5.0  # seconds to wait for the holding process's answer
PROBE_INTERVAL = 5.0
"""Seconds between a process's lag probes: an envelope for no conversation and
no recipients (every process ignores it as a delivery), whose payload is the
wall-clock time it was published; receivers measure how late it arrives."""
PROBE = b"probe:"


# On a process's own channel: commands relayed to it, and answers to its relays.
class Relay(msgspec.Struct, array_like=True, tag="c"):
    request: str
    reply_to: str
    connection_id: str
    user_id: str
    frames: bytes


class Answer(msgspec.Struct, array_like=True, tag="a"):
    request: str
    taken: bool


class RedisBroker:
    def __init__(
        self, url: str, channel: str = CHANNEL, probe_interval: float = PROBE_INTERVAL
    ) -> None:
        self.url = url
        self.channel = channel
        self.probe_interval = probe_interval
        self.origin = new_id("p")
        self.node_channel = self._node_channel(self.origin)
        self.healthy = False
        self.dropped = 0
        self.published = 0
        """Events handed to Redis (this process's own)."""
        self.received = 0
        """Events received from the other processes."""
        self.observe_lag: Callable[[float], None] = _ignore
        """Called with the seconds the oldest event of each published batch waited."""
        self.observe_receive_lag: Callable[[float], None] = _ignore
        """Called with how late another process's lag probe arrived (wall clocks)."""
        self._handlers: list[Handler] = []
        self._relay_handler: RelayHandler | None = None
        self._relay_client: aioredis.Redis | None = None
        self._answers: dict[str, asyncio.Future[bool]] = {}
        self._answering: set[asyncio.Task[None]] = set()
        self._reconnected: list[Callable[[], None]] = []
        self._outbox: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(OUTBOX)
        self._tasks: list[asyncio.Task[None]] = []
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Envelope)
        self._relay_decoder = msgspec.msgpack.Decoder(Relay | Answer)
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="hubbub-redis-listen"),
            asyncio.create_task(self._publish_loop(), name="hubbub-redis-publish"),
            asyncio.create_task(self._probe_loop(), name="hubbub-redis-probe"),
        ]
        with contextlib.suppress(TimeoutError):  # start degraded; keep trying
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._handlers.clear()
        if self._relay_client is not None:
            await self._relay_client.aclose()

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Called after the subscription comes back from an outage."""
        self._reconnected.append(callback)

    def publish(self, delivery: Delivery) -> None:
        for handler in self._handlers:
            handler(delivery)
        envelope = (
            self.origin,
            delivery.conversation_id,
            delivery.seq,
            delivery.recipients,
            delivery.payload,
        )
        try:
            self._outbox.put_nowait((time.monotonic(), self._encoder.encode(envelope)))
        except asyncio.QueueFull:
            self.dropped += 1

    def _node_channel(self, node: str) -> str:
        return f"{self.channel}:{node}"

    def on_relay(self, handler: RelayHandler) -> None:
        self._relay_handler = handler

    async def _publish_to(self, node: str, item: Relay | Answer) -> int:
        if self._relay_client is None:
            self._relay_client = aioredis.from_url(self.url)
        listeners: int = await self._relay_client.publish(
            self._node_channel(node), self._encoder.encode(item)
        )
        return listeners

    async def relay(self, node: str, message: Relayed) -> bool:
        if not NODE_NAME.fullmatch(node):
            return False
        request = new_id("r")
        answer = self._answers[request] = asyncio.get_running_loop().create_future()
        unreachable = "the process holding this session cannot be reached"
        try:
            if not await self._publish_to(node, Relay(request, self.origin, *message)):
                return False
            return await asyncio.wait_for(answer, RELAY_TIMEOUT)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"{unreachable}: {exc}") from None
        except TimeoutError:
            raise Unavailable(f"{unreachable}: no answer in {RELAY_TIMEOUT:g} s") from None
        finally:
            self._answers.pop(request, None)

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            probe = (self.origin, "", 0, (), PROBE + repr(time.time()).encode())
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait((time.monotonic(), self._encoder.encode(probe)))

    async def _publish_loop(self) -> None:
        client = aioredis.from_url(self.url)
        backoff = 0.1
        try:
            while True:
                batch = [await self._outbox.get()]
                while len(batch) < BATCH and not self._outbox.empty():
                    batch.append(self._outbox.get_nowait())
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        for _, item in batch:
                            pipe.publish(self.channel, item)
                        await pipe.execute()
                    self.published += len(batch)
                    self.observe_lag(time.monotonic() - batch[0][0])
                    backoff = 0.1
                except (RedisError, OSError) as exc:
                    # The database has these events; other processes recover them.
                    self.dropped += len(batch)
                    log.warning("redis publish failed (%s); %d events not relayed", exc, len(batch))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            await client.aclose()

    async def _listen(self) -> None:
        backoff = 0.1
        lost = False
        node_channel = self.node_channel.encode()
        while True:
            client = aioredis.from_url(self.url, health_check_interval=5)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel, self.node_channel)
                    self.healthy = True
                    self._subscribed.set()
                    backoff = 0.1
                    if lost:
                        log.warning("redis is back; catching up")
                        lost = False
                        for callback in self._reconnected:
                            callback()
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is None:
                            continue
                        if message["channel"] == node_channel:
                            self._relayed(message["data"])
                        else:
                            self._receive(message["data"])
            except (RedisError, OSError) as exc:
                if self.healthy:
                    log.warning("redis subscription lost: %s", exc)
                self.healthy = False
                lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _receive(self, data: bytes) -> None:
        try:
            origin, cid, seq, recipients, payload = self._decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("ignored a malformed broker message")
            return
        if origin == self.origin:
            return  # already delivered locally
        if not cid and not recipients and payload.startswith(PROBE):
            with contextlib.suppress(ValueError):
                self.observe_receive_lag(max(0.0, time.time() - float(payload[len(PROBE) :])))
            return
        self.received += 1
        delivery = Delivery(cid, seq, recipients, payload)
        for handler in self._handlers:
            handler(delivery)

    def _relayed(self, data: bytes) -> None:
        try:
            item = self._relay_decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("ignored a malformed relayed message")
            return
        if isinstance(item, Answer):  # to one of this process's relays
            waiting = self._answers.get(item.request)
            if waiting is not None and not waiting.done():
                waiting.set_result(item.taken)
            return
        handler = self._relay_handler
        taken = handler is not None and handler((item.connection_id, item.user_id, item.frames))
        if NODE_NAME.fullmatch(item.reply_to):
            answer = Answer(item.request, taken)
            task = asyncio.get_running_loop().create_task(self._answer(item.reply_to, answer))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _answer(self, node: str, answer: Answer) -> None:
        try:
            await self._publish_to(node, answer)
        except (RedisError, OSError) as exc:  # the relaying process answers 503 in time
            log.warning("could not answer a relayed post: %s", exc)


def _ignore(seconds: float) -> None:
    pass
