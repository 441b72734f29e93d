"""Composition: build every part from the settings and serve them on one port."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import Callable, Generator, Iterator

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from hubbub.api.app import Api
from hubbub.api.head import BoundedHttpProtocol
from hubbub.api.ops import Cluster, Stats, per_user
from hubbub.auth import TokenVerifier
from hubbub.broker.base import Broker
from hubbub.broker.memory import MemoryBroker
from hubbub.broker.redis import RedisBroker
from hubbub.clock import Clock, SystemClock
from hubbub.config import Settings
from hubbub.gateway import delivery
from hubbub.gateway.server import Gateway
from hubbub.limits.base import Limiter
from hubbub.limits.memory import MemoryLimiter
from hubbub.limits.quota import Quota
from hubbub.limits.redis import RedisLimiter
from hubbub.logs import configure
from hubbub.metrics import Metric, Metrics, counter, gauge, gauges
from hubbub.presence.memory import MemoryPresence
from hubbub.presence.redis import RedisPresence
from hubbub.service.chat import ChatService
from hubbub.service.conversations import ConversationService
from hubbub.service.fanout import Fanout
from hubbub.service.presence import PresenceService
from hubbub.service.push import PushService, PushWorker, providers
from hubbub.service.uploads import UploadService
from hubbub.store.base import Store
from hubbub.store.postgres import PostgresStore
from hubbub.store.sqlite import SQLiteStore

log = logging.getLogger("hubbub")

# Young objects the cycle collector lets accumulate before a pass (CPython's
# default is 700). A chat server allocates a few hundred tracked objects per
# message, so the default runs a pass every few messages and a
# middle-generation pass (milliseconds, with thousands of connections) every
# few dozen: a stall on the fan-out of that message. At this threshold passes
# come seconds apart and reach a far smaller share of messages.
GC_THRESHOLD = 50_000


def tune_gc() -> None:
    """Freeze what start-up built (never garbage) and space out collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, middle, old)


class Hubbub:
    """One hubbub process: store, broker, service, REST API and WebSocket gateway."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings = settings.with_secret()
        self.clock = clock or SystemClock()
        self.metrics = metrics = Metrics()
        store = (
            PostgresStore(settings.database_url, read_budget=settings.read_budget)
            if settings.postgres
            else SQLiteStore(
                settings.sqlite_path, settings.sqlite_synchronous, read_budget=settings.read_budget
            )
        )
        store.observe_commits(
            metrics.store_commit.labels("postgresql" if settings.postgres else "sqlite").observe
        )
        self.store: Store = store
        self.broker: Broker = MemoryBroker()
        if settings.redis_url:
            redis = RedisBroker(
                settings.redis_url,
                settings.redis_prefix + "events",
                routing=settings.routing,
                shards=settings.routing_shards,
                linger=settings.routing_linger,
            )
            redis.observe_lag = metrics.broker_publish_lag.observe
            redis.observe_receive_lag = metrics.broker_receive_lag.observe
            self.broker = redis
        self.fanout = Fanout(self.store, self.broker, shared=bool(settings.redis_url))
        self.presence = PresenceService(
            self.store,
            self.fanout,
            self.clock,
            grace=settings.presence_grace,
            fanout_max=settings.presence_fanout_max,
            watch_max=settings.presence_watch_max,
            cluster=(
                RedisPresence(
                    settings.redis_url, ttl=settings.presence_ttl, prefix=settings.redis_prefix
                )
                if settings.redis_url
                else MemoryPresence()
            ),
        )
        self.limiter: Limiter = (
            RedisLimiter(
                settings.redis_url, ttl=settings.presence_ttl, prefix=settings.redis_prefix
            )
            if settings.redis_url
            else MemoryLimiter(self.clock)
        )
        self.quota = Quota(self.limiter, settings.quotas)
        push_providers = providers(settings.push)
        self.push = PushService(self.store, self.clock, tuple(push_providers))
        self.push_worker = PushWorker(
            self.store,
            self.presence.cluster,
            self.clock,
            settings.push,
            push_providers,
            grace=settings.presence_grace,
            metrics=metrics,
        )
        self.chat = ChatService(
            self.store,
            self.fanout,
            self.clock,
            settings.limits,
            presence=self.presence,
            quota=self.quota,
            stored=self.push_worker.wake,
        )
        self.conversations = ConversationService(
            self.store, self.fanout, self.clock, settings.limits
        )
        self.uploads = UploadService(
            self.store,
            self.clock,
            settings.data_dir / "uploads",
            settings.upload_max_bytes,
            settings.upload_types,
        )
        self.verifier = TokenVerifier(settings, self.clock)
        self.gateway = Gateway(
            settings,
            self.chat,
            self.presence,
            self.verifier,
            self.broker,
            self.clock,
            metrics,
            quota=self.quota,
            conversations_of=self.store.conversation_ids,
        )
        metrics.watch(self.readings)
        self.api = Api(
            settings,
            chat=self.chat,
            conversations=self.conversations,
            presence=self.presence,
            uploads=self.uploads,
            push=self.push,
            verifier=self.verifier,
            gateway=self.gateway,
            ping=self.store.ping,
            broker_healthy=lambda: self.broker.healthy,
            connections=lambda: len(self.gateway.hub),
            metrics=metrics,
            stats=self.stats,
        )

    def readings(self) -> Iterator[Metric]:
        """The figures ``/metrics`` reads from the parts at each scrape."""
        hub, streams = self.gateway.hub, len(self.gateway.streams)
        yield gauges(
            "hubbub_connections",
            "Open sessions of this process, by transport",
            "transport",
            {"ws": len(hub) - streams, "sse": streams},
        )
        yield gauge("hubbub_online_users", "Users with a session in this process", hub.users)
        yield counter(
            "hubbub_deliveries", "Frames the fan-out handed to this process's sessions", hub.handed
        )
        broker = self.broker
        if isinstance(broker, RedisBroker):
            yield counter("hubbub_broker_published", "Events published to Redis", broker.published)
            yield counter(
                "hubbub_broker_received", "Events received from other processes", broker.received
            )
            yield counter(
                "hubbub_broker_unwanted",
                "Events received for no conversation or user watched here (a shared channel)",
                broker.unwanted,
            )
            yield gauge(
                "hubbub_broker_channels",
                "Routing channels this process is subscribed to",
                len(broker.subscribed),
            )
            yield gauge(
                "hubbub_broker_watched",
                "Conversations this process watches for its users",
                len(broker.interest.conversations),
            )
            yield counter(
                "hubbub_broker_dropped",
                "Events not relayed to other processes (Redis unreachable, outbox full)",
                broker.dropped,
            )
        worker = self.push_worker
        yield gauge(
            "hubbub_push_outbox_rows",
            "Rows waiting in the push outbox (noted messages, due rows, composed pushes)",
            worker.backlog,
        )
        oldest = worker.oldest_ms
        yield gauge(
            "hubbub_push_outbox_age_seconds",
            "Age of the oldest message the push outbox still holds (0: empty)",
            0.0 if oldest is None else max(0.0, self.clock.now() - oldest / 1000),
        )
        yield gauge("hubbub_broker_up", "1 while the other processes are reached", broker.healthy)

    async def stats(self) -> Stats:
        """``GET /api/v1/stats``: this process's figures, and the cluster's with Redis."""
        hub, streams = self.gateway.hub, len(self.gateway.streams)
        counts = list(hub.by_user())
        cluster = None
        census = getattr(self.presence.cluster, "census", None)
        if census is not None:
            with contextlib.suppress(Exception):  # Redis away: this process's figures only
                processes, online = await asyncio.wait_for(census(), 2.0)
                cluster = Cluster(processes=processes, online_users=online)
        return Stats(
            node=self.gateway.node,
            connections=len(hub),
            transports={"ws": len(hub) - streams, "sse": streams},
            users=len(counts),
            connections_per_user=per_user(counts),
            cluster=cluster,
        )

    async def start(self) -> None:
        await self.store.open(migrate=self.settings.auto_migrate)
        await self.broker.start()
        await self.presence.cluster.start()
        await self.limiter.start()
        await self.gateway.start()
        self.verifier.start()
        if self.settings.push.enabled:
            self.push_worker.start()

    async def stop(self) -> None:
        await self.push_worker.stop()
        self.presence.close()
        await self.gateway.stop()
        await self.limiter.stop()
        await self.presence.cluster.stop()
        await self.broker.stop()
        await self.store.close()
        await self.verifier.close()

    def uvicorn_config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.api.app(),
            host=self.settings.host,
            port=self.settings.port,
            ws=self.gateway.connection_class(),
            http=BoundedHttpProtocol,  # httptools, with a bound on request heads
            lifespan="off",
            log_level=self.settings.log_level,
            # JSON logs: uvicorn's records go through the root handler too.
            log_config=None if self.settings.log_format == "json" else LOGGING_CONFIG,
            access_log=False,
            server_header=False,
            # The client's address is the socket's, or HUBBUB_CLIENT_IP_HEADER's
            # (the limits): never a header uvicorn would trust on its own.
            proxy_headers=False,
            timeout_graceful_shutdown=5,
            backlog=4096,
        )

    def uvicorn_server(self) -> uvicorn.Server:
        return _Server(self.uvicorn_config(), self.gateway.close_streams)

    async def serve(self) -> None:
        server = self.uvicorn_server()
        await self.start()
        tune_gc()
        log.info(
            "hubbub on http://%s:%d (database %s, %s mode, %s fan-out)",
            self.settings.host,
            self.settings.port,
            "postgresql" if self.settings.postgres else self.settings.sqlite_path,
            self.settings.env,
            "compiled" if delivery.COMPILED else "pure-Python",
        )
        if self.settings.jwks_url and not self.settings.jwt_audience:
            log.warning(
                "HUBBUB_JWKS_URL is set without HUBBUB_JWT_AUDIENCE: tokens the provider"
                " signs for any application are accepted"
            )
        try:
            await server.serve()
        finally:
            await self.stop()


class _Server(uvicorn.Server):
    """uvicorn's server, ending the HTTP streams first when it shuts down.

    uvicorn waits for open responses to finish; an event stream never would.
    """

    def __init__(self, config: uvicorn.Config, before_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._before_shutdown()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's, without raising the signal again once the server has stopped.

        uvicorn re-raises a SIGTERM or SIGINT it shut down for, so the process
        would die of it (status -15) before the store is closed. A shutdown it
        asked for is a clean one: the process closes everything and exits 0.
        """
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def run(settings: Settings) -> None:
    configure(settings.log_level, settings.log_format)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent on Windows only
        asyncio.run(Hubbub(settings).serve())
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(Hubbub(settings).serve())
