"""Composition: build every part from the settings and serve them on one port."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
from collections.abc import Callable

import uvicorn

from hubbub.api.app import Api
from hubbub.auth import TokenVerifier
from hubbub.broker.base import Broker
from hubbub.broker.memory import MemoryBroker
from hubbub.broker.redis import RedisBroker
from hubbub.clock import Clock, SystemClock
from hubbub.config import Settings
from hubbub.gateway import delivery
from hubbub.gateway.server import Gateway
from hubbub.presence.memory import MemoryPresence
from hubbub.presence.redis import RedisPresence
from hubbub.service.chat import ChatService
from hubbub.service.conversations import ConversationService
from hubbub.service.fanout import Fanout
from hubbub.service.presence import PresenceService
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
        self.store: Store = (
            PostgresStore(settings.database_url)
            if settings.postgres
            else SQLiteStore(settings.sqlite_path, settings.sqlite_synchronous)
        )
        self.broker: Broker = (
            RedisBroker(settings.redis_url, settings.redis_prefix + "events")
            if settings.redis_url
            else MemoryBroker()
        )
        self.fanout = Fanout(self.store, self.broker, shared=bool(settings.redis_url))
        self.presence = PresenceService(
            self.store,
            self.fanout,
            self.clock,
            grace=settings.presence_grace,
            cluster=(
                RedisPresence(
                    settings.redis_url, ttl=settings.presence_ttl, prefix=settings.redis_prefix
                )
                if settings.redis_url
                else MemoryPresence()
            ),
        )
        self.chat = ChatService(
            self.store, self.fanout, self.clock, settings.limits, presence=self.presence
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
        self.verifier = TokenVerifier(settings)
        self.gateway = Gateway(
            settings, self.chat, self.presence, self.verifier, self.broker, self.clock
        )
        self.api = Api(
            settings,
            chat=self.chat,
            conversations=self.conversations,
            presence=self.presence,
            uploads=self.uploads,
            verifier=self.verifier,
            gateway=self.gateway,
            ping=self.store.ping,
            broker_healthy=lambda: self.broker.healthy,
            connections=lambda: len(self.gateway.hub),
        )

    async def start(self) -> None:
        await self.store.open(migrate=self.settings.auto_migrate)
        await self.broker.start()
        await self.presence.cluster.start()
        await self.gateway.start()

    async def stop(self) -> None:
        self.presence.close()
        await self.gateway.stop()
        await self.presence.cluster.stop()
        await self.broker.stop()
        await self.store.close()

    def uvicorn_config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.api.app(),
            host=self.settings.host,
            port=self.settings.port,
            ws=self.gateway.connection_class(),
            http="httptools",
            lifespan="off",
            log_level=self.settings.log_level,
            access_log=False,
            server_header=False,
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


def run(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent on Windows only
        asyncio.run(Hubbub(settings).serve())
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(Hubbub(settings).serve())
