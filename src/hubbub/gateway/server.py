"""The gateway: wires connections to the service, the hub and the heartbeat."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from hubbub.auth import Identity, TokenVerifier
from hubbub.broker.base import Broker, Relayed
from hubbub.clock import Clock, iso_ms, now_ms
from hubbub.config import Settings
from hubbub.errors import Forbidden, HubbubError, Unavailable
from hubbub.gateway.connection import HEARTBEAT_TIMEOUT, SERVICE_RESTART, UNAUTHORIZED, Connection
from hubbub.gateway.handshake import bearer, origin_allowed
from hubbub.gateway.hub import Hub
from hubbub.gateway.interest import ConversationsOf, Interest
from hubbub.gateway.sequencer import Sequencer
from hubbub.gateway.session import Link, Outbound, Session
from hubbub.gateway.stream import Stream
from hubbub.gateway.writer import Flusher
from hubbub.limits.quota import Quota, client_address
from hubbub.metrics import DETACHED, Metrics
from hubbub.protocol import events
from hubbub.service.chat import ChatService
from hubbub.service.presence import PresenceService
from hubbub.tasks import TaskSet

log = logging.getLogger("hubbub.gateway")
PROTOCOL_VERSION = 1
PRESENCE_TICK = 0.5
GREET_WAIT = 5.0
"""Seconds a new session waits at most for its conversations' events before ``hello``."""
HEARTBEAT_SLICE = 200  # connections checked at once
HEARTBEAT_PAUSE = 0.02  # seconds between two slices (less when a pass would not fit)


class Gateway:
    def __init__(
        self,
        settings: Settings,
        chat: ChatService,
        presence: PresenceService,
        verifier: TokenVerifier,
        broker: Broker,
        clock: Clock,
        metrics: Metrics = DETACHED,
        quota: Quota | None = None,
        conversations_of: ConversationsOf | None = None,
    ) -> None:
        self.metrics = metrics
        self.quota = quota  # connect rate per address, connections per user
        self.settings = settings
        self.limits = settings.limits
        self.chat = chat
        self.presence = presence
        self.verifier = verifier
        self.clock = clock
        self.broker = broker
        self.node = broker.origin
        self.streams: dict[str, Stream] = {}  # HTTP-stream sessions by connection id
        self.closing = False
        self.hub = Hub()
        self.sequencer = Sequencer(self.hub.deliver, chat.missed, metrics=metrics)
        self.flusher: Flusher
        self._tasks = TaskSet("gateway task")
        self._loops: list[asyncio.Task[None]] = []
        self.interest: Interest | None = None
        """What this process watches, when the broker routes by interest."""
        if broker.routed:
            if conversations_of is None:
                raise ValueError("routing by interest needs the users' conversations")
            self.interest = Interest(
                broker, self.sequencer, conversations_of, chat.replay, self.spawn
            )
            broker.subscribe(self.interest)  # before the sequencer: a join watches first
        broker.subscribe(self.sequencer)
        broker.on_reconnect(self.resync)
        broker.on_relay(self._commands)

    def connection_class(self) -> type[Connection]:
        """The asyncio protocol class uvicorn instantiates per WebSocket."""
        return type("HubbubConnection", (Connection,), {"gateway": self})

    async def start(self) -> None:
        self.flusher = Flusher(asyncio.get_running_loop())
        self.hub.flusher = self.flusher
        heartbeat = min(self.settings.heartbeat_interval, self.settings.heartbeat_timeout) / 2
        self._loops = [
            asyncio.create_task(self._every(heartbeat, lambda: self._heartbeat(heartbeat))),
            asyncio.create_task(self._every(PRESENCE_TICK, self.presence.sweep)),
        ]

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        self._tasks.cancel()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a task of a connection's (kept alive, failures logged, cancelled on stop)."""
        self._tasks.spawn(coro)

    def admit_now(
        self,
        origin: str | None,
        host: str | None,
        query_token: str | None,
        authorization: str | None,
        address: str | None = None,
    ) -> Identity | None:
        """Who opens a session (a WebSocket or an HTTP stream): the origin, then the token.

        Raises ``Forbidden`` for an origin not allowed, ``Unauthorized`` for a
        missing or bad token (``?token=`` first, else the bearer header),
        ``Unavailable`` when the key set it needs cannot be fetched. None when
        the key set must be fetched first: ``admit`` then answers.

        With the client's ``address`` (a new session, not a post to one), the
        limits apply too: ``RateLimited`` beyond the address's connect rate,
        ``TooManyConnections`` when the user has its most. None also when
        they need a round trip (the limits are in Redis).
        """
        self._check_origin(origin, host)
        if address is not None and self.quota is not None:
            return self._limited_now(self.quota, address, query_token or bearer(authorization))
        return self.verifier.check(query_token or bearer(authorization))

    def _check_origin(self, origin: str | None, host: str | None) -> None:
        if not origin_allowed(origin, host, self.settings.cors_origins):
            raise Forbidden("this origin may not connect (HUBBUB_CORS_ORIGINS)")

    def address(self, peer: str | None, values: Callable[[str], list[str]]) -> str | None:
        """The client's address, for the limits (``values``: a header's values, in order).

        The right-most value of ``HUBBUB_CLIENT_IP_HEADER`` when it is set and
        the request has it, else the socket's peer. None without limits.
        """
        if self.quota is None:
            return None
        header = self.quota.quotas.client_ip_header
        return client_address(peer, values(header) if header else [], header)

    def _limited_now(self, quota: Quota, address: str, token: str | None) -> Identity | None:
        if not quota.immediate:
            return None
        try:
            identity = self.verifier.check(token)
        except HubbubError:
            quota.knock_now(address)  # a refused token counts, and the rate is told first
            raise
        if identity is not None:  # else ``admit`` knocks, once the key set is there
            quota.knock_now(address)
            quota.enter_now(identity.user_id)
        return identity

    async def admit(
        self,
        origin: str | None,
        host: str | None,
        query_token: str | None,
        authorization: str | None,
        address: str | None = None,
    ) -> Identity:
        """``admit_now``, fetching the key set when the token needs it."""
        quota = self.quota
        if address is not None and quota is not None:
            self._check_origin(origin, host)
            await quota.knock(address)
            token = query_token or bearer(authorization)
            admitted = self.verifier.check(token) or await self.verifier.verify(token)
            await quota.enter(admitted.user_id)
            return admitted
        identity = self.admit_now(origin, host, query_token, authorization)
        if identity is None:
            identity = await self.verifier.verify(query_token or bearer(authorization))
        return identity

    def open_session(
        self, identity: Identity, writer: Outbound, link: Link, connection_id: str
    ) -> Session:
        """A new session on its transport, counted, and greeted with ``hello`` when ready.

        Under routing by interest that is once this process receives the
        events of the user's conversations (``Interest.ready``), at most
        ``GREET_WAIT`` seconds after connecting: every event committed after
        ``hello`` then reaches the session live, and what came before it is
        in the database for ``resume``. Meanwhile live events are held and
        commands wait, as they would behind a slow first command.
        """
        session = Session(
            identity,
            writer,
            link,
            connection_id,
            chat=self.chat,
            presence=self.presence,
            limits=self.limits,
            clock=self.clock,
            spawn=self.spawn,
            tokens=self.verifier,
            metrics=self.metrics.sse if isinstance(link, Stream) else self.metrics.ws,
        )
        self.attach(session)
        ready = None if self.interest is None else self.interest.ready(session.user_id)
        if ready is None:
            session.greet(self.hello(session))
        else:
            self._tasks.spawn(self._greet(session, ready))
        return session

    async def _greet(self, session: Session, ready: asyncio.Future[None]) -> None:
        await asyncio.wait([ready], timeout=GREET_WAIT)
        if not ready.done():
            self.metrics.greeted_unready.inc()
            log.warning(
                "hello to %s after %.0f s without their conversations' events",
                session.user_id,
                GREET_WAIT,
            )
        session.greet(self.hello(session))

    def close_streams(self) -> None:
        """On shutdown: end every HTTP stream (uvicorn would wait for them)."""
        self.closing = True
        for stream in list(self.streams.values()):
            stream.close(SERVICE_RESTART, "server restarting")

    def open_stream(self, identity: Identity) -> Stream:
        """A session on the HTTP fallback transport (``stream.py``)."""
        if self.closing:
            raise Unavailable("server restarting: connect again")
        stream = Stream(self)
        # Named after this process, so that a post reaching another finds it.
        connection_id = f"{self.node}.{uuid.uuid4().hex}"
        stream.session = self.open_session(identity, stream.writer, stream, connection_id)
        self.streams[connection_id] = stream
        return stream

    async def post(self, connection_id: str, user_id: str, frames: bytes) -> bool:
        """Hand posted frames to their HTTP-stream session, wherever it is.

        False if no such session of this user is known (here, or to the
        process the id names).
        """
        node = connection_id.partition(".")[0]
        if node == self.node:
            return self._commands((connection_id, user_id, frames))
        # Answered once the holder's session has taken them: a later post
        # reaching the holder directly cannot overtake them.
        return await self.broker.relay(node, (connection_id, user_id, frames))

    def _commands(self, message: Relayed) -> bool:
        connection_id, user_id, frames = message
        stream = self.streams.get(connection_id)
        session = None if stream is None else stream.session
        if stream is None or session is None or session.user_id != user_id:
            return False
        return stream.commands(frames)

    def resync(self) -> None:
        """After a broker outage: deliver what was missed, and ask clients to resume."""
        self.metrics.broker_resyncs.inc()
        self._tasks.spawn(self.sequencer.catch_up())
        if self.interest is not None:
            self._tasks.spawn(self.interest.refresh())
        frame = events.event("resync", reason="broker reconnected")
        for session in self.hub.sessions():
            session.send(frame)

    def attach(self, session: Session) -> None:
        self.hub.add(session)
        if self.interest is not None:
            self.interest.opened(session.user_id)
        self.presence.connected(session.user_id)
        if self.quota is not None:
            self.quota.opened(session.user_id, session.connection_id)
        self._tasks.spawn(self.chat.seen(session.identity))

    def detach(self, session: Session) -> None:
        """Forget a closing or closed session (once)."""
        if session.attached:
            session.attached = False
            self.hub.remove(session)
            if self.interest is not None:
                self.interest.closed(session.user_id)
            self.presence.disconnected(session.user_id, session.connection_id)
            if self.quota is not None:
                self.quota.closed(session.user_id, session.connection_id)

    def hello(self, session: Session) -> bytes:
        limits = self.limits
        return events.event(
            "hello",
            user_id=session.user_id,
            connection_id=session.connection_id,
            protocol_version=PROTOCOL_VERSION,
            server_time=iso_ms(now_ms(self.clock)),
            heartbeat_interval_ms=int(self.settings.heartbeat_interval * 1000),
            resume_window_ms=int(limits.resume_window * 1000),
            typing_ttl_ms=int(self.presence.typing_ttl * 1000),
            limits={
                "max_frame_bytes": limits.max_frame_bytes,
                "max_body_chars": limits.max_body_chars,
                "resume_limit": limits.resume_limit,
                "outbound_buffer_bytes": limits.outbound_buffer_bytes,
                "presence_subscriptions": self.presence.watches.limit,
            },
        )

    def sweep(self) -> None:
        """One heartbeat pass over every connection at once (tests drive it so)."""
        self._check(list(self.hub.sessions()))

    async def _heartbeat(self, period: float) -> None:
        """A heartbeat pass, HEARTBEAT_SLICE connections at a time, spread out.

        Connections opened together (a restart's reconnect) come due together.
        Pinging 16,000 of them in one go held up every other frame for the
        100 ms the sends took, and their pongs, arriving together, for as long
        again (a message's p99 was 87 ms beside 50,000 idle connections): so
        the slices are HEARTBEAT_PAUSE apart, and the pass ends within half
        the period.
        """
        sessions = list(self.hub.sessions())
        starts = range(0, len(sessions), HEARTBEAT_SLICE)
        pause = min(HEARTBEAT_PAUSE, period / 2 / max(len(starts), 1))
        for start in starts:
            if start:
                await asyncio.sleep(pause)
            self._check(sessions[start : start + HEARTBEAT_SLICE])

    def _check(self, sessions: list[Session]) -> None:
        """Ping idle connections, close dead and expired ones."""
        now = self.clock.monotonic()
        wall = self.clock.now()
        interval = self.settings.heartbeat_interval
        timeout = self.settings.heartbeat_timeout
        for session in sessions:
            connection = session.connection
            if session.writer.closed:
                continue  # it closed while an earlier slice ran
            try:
                if session.identity.expires_at <= wall:
                    connection.close(UNAUTHORIZED, "token expired")
                elif session.ping_sent_at is not None:
                    if now - session.ping_sent_at >= timeout:
                        connection.close(HEARTBEAT_TIMEOUT, "no answer to ping")
                elif now - session.last_activity >= interval:
                    session.ping_sent_at = now
                    connection.ping()
            except Exception:  # one connection must not cost the others their checks
                log.exception("heartbeat check failed for a connection of %s", session.user_id)
                connection.fail()

    @staticmethod
    async def _every(period: float, sweep: Callable[[], Awaitable[None] | None]) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                pending = sweep()
                if pending is not None:
                    await pending
            except Exception:
                log.exception("periodic sweep failed")
