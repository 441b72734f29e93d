"""The scale-out broker: Redis pub/sub between hubbub processes.

With ``routing="broadcast"`` every process publishes committed events on one
channel and subscribes to it; each keeps the events some local connection
needs (the hub filters by recipient). With ``routing="interest"`` an event
goes on its conversation's channel (one of ``shards``), and a process
subscribes to the channels its connected users need (``routing.py``). Every
process also listens on the base channel (lag probes) and on a channel of its
own, which carries commands posted to another process for an HTTP-stream
session it holds (``redis_relay.py``).

Local recipients are served at once, without a round trip through Redis, so
a Redis outage leaves every process serving its own connections. Events
published while Redis is away are lost to the other processes; the database
has them, and on reconnect each process subscribes again to everything it
watches, catches up from the database and tells its clients to ``resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from hubbub.broker.base import Delivery, Handler, Relayed, RelayHandler
from hubbub.broker.redis_relay import RELAY_TIMEOUT, Relays
from hubbub.broker.routing import BROADCAST, LINGER, MODES, SHARDS, Channels, Interest
from hubbub.ids import new_id
from hubbub.tasks import cancel_and_wait

log = logging.getLogger("hubbub.broker")

CHANNEL = "hubbub:events"
OUTBOX = 10_000
BATCH = 256
BACKOFF_MAX = 2.0

Envelope = tuple[str, str, int, tuple[str, ...], bytes, tuple[str, ...], tuple[str, ...], str]
"""(origin, conversation, seq, recipients, payload, joined, left, once): ``once``
names an event published on several channels, which a process takes once."""
ONCE_MEMORY = 4096  # ``once`` names remembered
CHUNK = 500  # channels per SUBSCRIBE / UNSUBSCRIBE
RECONCILE_EVERY = 1.0  # seconds between looks for lingering channels to drop
PROBE_INTERVAL = 5.0
"""Seconds between a process's lag probes: an envelope for no conversation and
no recipients (every process ignores it as a delivery), whose payload is the
wall-clock time it was published; receivers measure how late it arrives."""
PROBE = b"probe:"


class RedisBroker:
    def __init__(
        self,
        url: str,
        channel: str = CHANNEL,
        probe_interval: float = PROBE_INTERVAL,
        routing: str = BROADCAST,
        shards: int = SHARDS,
        linger: float = LINGER,
    ) -> None:
        if routing not in MODES:
            raise ValueError(f"routing must be one of {', '.join(MODES)}")
        self.url = url
        self.channel = channel
        self.probe_interval = probe_interval
        self.routed = routing != BROADCAST
        self.channels = Channels(channel, shards)
        self.interest = Interest(self.channels, linger)
        self.origin = new_id("p")
        self._relays = Relays(url, channel, self.origin)
        self.node_channel = self._relays.channel
        self._node_channel = self.node_channel.encode()
        self.healthy = False
        self.dropped = 0
        self.published = 0
        """Envelopes handed to Redis (this process's own events, once per channel)."""
        self.received = 0
        """Events received from the other processes."""
        self.unwanted = 0
        """Of those, events of nothing watched here (conversations sharing a channel)."""
        self.subscribed: set[str] = set()
        """Routing channels Redis confirmed on the current connection."""
        self.observe_lag: Callable[[float], None] = _ignore
        """Called with the seconds the oldest event of each published batch waited."""
        self.observe_receive_lag: Callable[[float], None] = _ignore
        """Called with how late another process's lag probe arrived (wall clocks)."""
        self._handlers: list[Handler] = []
        self._reconnected: list[Callable[[], None]] = []
        self._outbox: asyncio.Queue[tuple[float, str, bytes]] = asyncio.Queue(OUTBOX)
        self._tasks: list[asyncio.Task[None]] = []
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Envelope)
        self._subscribed = asyncio.Event()
        self._waiters: dict[str, asyncio.Event] = {}
        self._dirty = asyncio.Event()
        self._changes = -1  # the interest's changes the subscriptions were last made for
        self._once: dict[str, None] = {}
        self._stopping = False

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="hubbub-redis-listen"),
            asyncio.create_task(self._publish_loop(), name="hubbub-redis-publish"),
            asyncio.create_task(self._probe_loop(), name="hubbub-redis-probe"),
        ]
        with contextlib.suppress(TimeoutError):  # start degraded; keep trying
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def stop(self) -> None:
        self._stopping = True  # the loops end on it, should a cancellation be swallowed
        await cancel_and_wait(self._tasks)
        self._handlers.clear()
        await self._relays.close()

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Called after the subscription comes back from an outage."""
        self._reconnected.append(callback)

    def publish(self, delivery: Delivery) -> None:
        for handler in self._handlers:
            handler(delivery)
        if self.routed:
            routes = self.channels.routes(delivery)
        else:
            routes = [(self.channel, delivery.recipients)]
        once = new_id("o") if len(routes) > 1 and delivery.conversation_id else ""
        now = time.monotonic()
        for channel, recipients in routes:
            envelope = (
                self.origin,
                delivery.conversation_id,
                delivery.seq,
                recipients,
                delivery.payload,
                delivery.joined,
                delivery.left,
                once,
            )
            try:
                self._outbox.put_nowait((now, channel, self._encoder.encode(envelope)))
            except asyncio.QueueFull:
                self.dropped += 1

    # Relays -------------------------------------------------------------

    def on_relay(self, handler: RelayHandler) -> None:
        self._relays.handler = handler

    async def relay(self, node: str, message: Relayed) -> bool:
        return await self._relays.relay(node, message)

    # Interest -----------------------------------------------------------

    def watch(self, conversation_id: str) -> None:
        self.interest.watch(conversation_id)
        self._poke()

    def unwatch(self, conversation_id: str) -> None:
        self.interest.unwatch(conversation_id)
        self._poke()

    def watch_user(self, user_id: str) -> None:
        self.interest.watch_user(user_id)
        self._poke()

    def unwatch_user(self, user_id: str) -> None:
        self.interest.unwatch_user(user_id)
        self._poke()

    def _poke(self) -> None:
        if self.routed and self.interest.changes != self._changes:
            self._dirty.set()

    async def watched(self, conversation_id: str, timeout: float = RELAY_TIMEOUT) -> bool:
        if not self.routed:
            return self.healthy
        return await self._all_subscribed({self.channels.conversation(conversation_id)}, timeout)

    async def settled(self, timeout: float = RELAY_TIMEOUT) -> bool:
        if not self.routed or not self.healthy:
            return self.healthy
        return await self._all_subscribed(self.interest.needed_channels(), timeout)

    async def _all_subscribed(self, channels: set[str], timeout: float) -> bool:
        """Wait until Redis confirmed the subscription of each of ``channels``."""
        missing = channels - self.subscribed
        if not missing:
            return True
        waiters = [self._waiters.setdefault(channel, asyncio.Event()) for channel in missing]
        try:
            async with asyncio.timeout(timeout):
                for waiter in waiters:
                    await waiter.wait()
        except TimeoutError:
            return False
        return True

    def watching(self, conversation_id: str) -> bool:
        """Whether the events of ``conversation_id`` are received here now."""
        if not self.routed:
            return self.healthy
        return self.channels.conversation(conversation_id) in self.subscribed

    async def _reconcile(self, pubsub: PubSub, sent: set[str]) -> None:
        """Keep the connection's subscriptions to what ``interest`` wants (``sent``: so far)."""
        while not self._stopping:
            self._changes = self.interest.changes
            self._dirty.clear()
            wanted = self.interest.wanted()
            await _each_chunk(pubsub.subscribe, wanted - sent)
            await _each_chunk(pubsub.unsubscribe, sent - wanted)
            sent = wanted
            with contextlib.suppress(TimeoutError):
                timeout = RECONCILE_EVERY if self.interest.lingering() else None
                await asyncio.wait_for(self._dirty.wait(), timeout)

    def _confirmed(self, kind: str, channel: str) -> None:
        if channel in (self.channel, self.node_channel):
            return  # always subscribed: not a routing channel
        if kind == "subscribe":
            self.subscribed.add(channel)
            waiter = self._waiters.pop(channel, None)
            if waiter is not None:
                waiter.set()
        elif kind == "unsubscribe":
            self.subscribed.discard(channel)

    # Redis --------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.probe_interval)
            probe = (self.origin, "", 0, (), PROBE + repr(time.time()).encode(), (), (), "")
            with contextlib.suppress(asyncio.QueueFull):
                item = (time.monotonic(), self.channel, self._encoder.encode(probe))
                self._outbox.put_nowait(item)

    async def _publish_loop(self) -> None:
        client = aioredis.from_url(self.url)
        backoff = 0.1
        try:
            while not self._stopping:
                batch = [await self._outbox.get()]
                while len(batch) < BATCH and not self._outbox.empty():
                    batch.append(self._outbox.get_nowait())
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        for _, channel, item in batch:
                            pipe.publish(channel, item)
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
        while not self._stopping:
            client = aioredis.from_url(self.url, health_check_interval=5)
            reconcile: asyncio.Task[None] | None = None
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel, self.node_channel)
                    if self.routed:
                        # Subscribed again before the catch-up reads the database.
                        sent = await self._resubscribe(pubsub)
                        reconcile = asyncio.create_task(self._reconcile(pubsub, sent))
                    self.healthy = True
                    self._subscribed.set()
                    backoff = 0.1
                    if lost:
                        log.warning("redis is back; catching up")
                        lost = False
                        for callback in self._reconnected:
                            callback()
                    while not self._stopping:
                        if reconcile is not None and reconcile.done():
                            reconcile.result()  # its failure is the connection's
                        self._dispatch(await pubsub.get_message(timeout=1.0))
            except (RedisError, OSError) as exc:
                if self.healthy:
                    log.warning("redis subscription lost: %s", exc)
                self.healthy = False
                lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                self.subscribed.clear()
                if reconcile is not None:
                    reconcile.cancel()
                    with contextlib.suppress(BaseException):
                        await reconcile
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _resubscribe(self, pubsub: PubSub) -> set[str]:
        """Subscribe to every wanted channel; return once Redis confirmed them (or in time)."""
        self._changes = self.interest.changes
        wanted = self.interest.wanted()
        await _each_chunk(pubsub.subscribe, wanted)
        deadline = time.monotonic() + RELAY_TIMEOUT
        while not wanted <= self.subscribed and time.monotonic() < deadline:
            self._dispatch(await pubsub.get_message(timeout=0.5))
        return wanted

    def _dispatch(self, message: dict[str, object] | None) -> None:
        if message is None:
            return
        kind, channel, data = message.get("type"), message.get("channel"), message.get("data")
        if not isinstance(channel, bytes):
            return  # a pong
        if kind in ("subscribe", "unsubscribe"):
            self._confirmed(kind, channel.decode())
        elif kind != "message" or not isinstance(data, bytes):
            return
        elif channel == self._node_channel:
            self._relays.received(data)
        else:
            self._receive(data)

    def _receive(self, data: bytes) -> None:
        try:
            origin, cid, seq, recipients, payload, joined, left, once = self._decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("ignored a malformed broker message")
            return
        if origin == self.origin:
            return  # already delivered locally
        if not cid and not recipients and payload.startswith(PROBE):
            with contextlib.suppress(ValueError):
                self.observe_receive_lag(max(0.0, time.time() - float(payload[len(PROBE) :])))
            return
        if once:  # one event on several channels: the first copy to arrive is the one
            if once in self._once:
                return
            self._once[once] = None
            if len(self._once) > ONCE_MEMORY:
                del self._once[next(iter(self._once))]
        self.received += 1
        delivery = Delivery(cid, seq, recipients, payload, joined, left)
        if self.routed and not self.interest.wants(delivery):
            self.unwanted += 1
            return
        for handler in self._handlers:
            handler(delivery)


async def _each_chunk(command: Callable[..., object], channels: set[str]) -> None:
    ordered = sorted(channels)
    for start in range(0, len(ordered), CHUNK):
        result = command(*ordered[start : start + CHUNK])
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            await result


def _ignore(seconds: float) -> None:
    pass
