"""One authenticated connection: commands in order, replies, resume.

The transport under it is a WebSocket (``connection.py``) or an HTTP stream
(``stream.py``); the session is the same for both.

Commands from one connection are handled strictly in arrival order. Consecutive
``message.send`` commands that queued up while the previous batch was being
committed are stored together in one transaction (in order), which keeps a
pipelining client fast without reordering its messages.

Live events of a conversation are *held* from connect until the client's first
command has been handled (or ``resume_window`` passes), and again while a
``resume`` runs, so that replayed events and live ones reach the client in seq
order. Presence, which belongs to no conversation, is not held. Whatever the
source of a stream event (live, replayed, a gap filled from the database), it
reaches the client once and in seq order (``handed.Handed``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from hubbub.auth import Identity
from hubbub.clock import Clock, iso_ms
from hubbub.config import Limits
from hubbub.errors import Forbidden, HubbubError, Unavailable
from hubbub.gateway.handed import GAP, SEND, Handed, visible
from hubbub.logs import CONNECTION_ID
from hubbub.metrics import DETACHED, TransportMetrics
from hubbub.models import Message, Receipt, Replay, SendItem, StreamEvent
from hubbub.protocol import events
from hubbub.protocol.commands import (
    AddReaction,
    Command,
    DeleteMessage,
    Delivered,
    EditMessage,
    Ping,
    Presence,
    ProtocolError,
    Read,
    RefreshToken,
    RemoveReaction,
    Resume,
    SendMessage,
    Typing,
    parse,
)
from hubbub.protocol.wsframe import text_frame
from hubbub.service.watches import Watcher

log = logging.getLogger("hubbub.gateway")

MAX_SEND_BATCH = 64
FILL_LIMIT = 1000  # events read from the database per gap fill
NOT_YOURS = b""  # in place of a frame: a seq of the stream that is not for this client
Held = tuple[str, int, bytes]


class Refusal(Command, kw_only=True):
    """A frame refused by ``parse``, answered in its turn after the ones before it."""

    frame: bytes


class Link(Protocol):
    """What a session needs of its transport: a WebSocket, or an HTTP stream."""

    def close(self, code: int, reason: str) -> None: ...

    def ping(self) -> None: ...

    def overflow(self) -> None:
        """Close as too slow (4409), soon."""

    def fail(self) -> None:
        """Close with an internal error (1011), soon."""

    def pause_reading(self, pause: bool) -> None:
        """Take no more commands for now (or again)."""


class Outbound(Protocol):
    """A transport's outbound queue, as the session and the fan-out use it."""

    closed: bool

    def push(self, data: bytes) -> None:
        """Queue one or more encoded WebSocket frames."""

    def flush(self) -> None: ...

    def discard(self) -> None:
        """Drop what is queued and accept nothing more."""


class Chat(Protocol):
    """What a session needs of the messages service (``ChatService``)."""

    async def send(
        self, user: str, items: list[SendItem]
    ) -> Sequence[tuple[Message, bool] | HubbubError]:
        """Store in order; per item ``(message, created)`` or the error that refused it."""

    async def edit(self, user: str, message_id: str, body: str) -> Message: ...

    async def delete(self, user: str, message_id: str) -> Message: ...

    async def mark(self, user: str, conversation_id: str, kind: str, seq: int) -> Receipt | None:
        """Move the ``read`` or ``delivered`` pointer; None if it did not move."""

    async def react(self, user: str, message_id: str, emoji: str, add: bool) -> tuple[int, bool]:
        """``(count, changed)``."""

    async def replay(self, user: str, cursors: dict[str, int]) -> Sequence[Replay]:
        """What ``resume`` finds after each cursor."""

    async def events_after(self, cid: str, after: int, limit: int) -> Sequence[StreamEvent]:
        """Committed stream events after ``after`` (a gap fill)."""

    async def seen(self, identity: Identity) -> None:
        """Record the display name a token carries."""


class Tokens(Protocol):
    """What a session needs to take a refreshed token (``TokenVerifier``)."""

    async def verify(self, token: str | None) -> Identity:
        """The token's identity; raises ``Unauthorized`` (or ``Unavailable``)."""


class Typists(Protocol):
    """What a session needs of presence (``PresenceService``): typing, subscriptions."""

    async def typing(self, user: str, cid: str, state: str, connection_id: str) -> None: ...

    async def watch(
        self, watcher: Watcher, subscribe: list[str], unsubscribe: list[str]
    ) -> dict[str, object]:
        """The ``presence`` command: the ack's fields."""

    async def typists(self, cid: str, viewer: str) -> list[str]:
        """Who is typing in a conversation, as ``viewer`` may see it."""


Spawn = Callable[[Coroutine[Any, Any, None]], object]
"""Runs a session's background task (kept alive, failures logged, cancelled on stop)."""


class Session:
    def __init__(
        self,
        identity: Identity,
        writer: Outbound,
        connection: Link,
        connection_id: str,
        *,
        chat: Chat,
        presence: Typists,
        limits: Limits,
        clock: Clock,
        spawn: Spawn,
        tokens: Tokens,
        metrics: TransportMetrics = DETACHED.ws,
    ) -> None:
        self._chat = chat
        self._tokens = tokens
        self.metrics = metrics
        self._presence = presence
        self._limits = limits
        self._spawn = spawn
        self.identity = identity
        self.user_id = identity.user_id
        self.connection_id = connection_id
        self.writer = writer
        self.held: list[Held] | None = []
        self._held_bytes = 0
        self.handed = Handed()
        # What the fan-out reads (delivery.py): the dict of the highest seq per
        # conversation, moved in place as events go out; None while live
        # events are held, so that one attribute read tells both.
        self.high: dict[str, int] | None = None
        # Live frames of a conversation waiting behind a gap being filled.
        self._filling: dict[str, list[tuple[int, bytes]]] | None = None
        self._filling_bytes = 0
        self.connection = connection
        self._paused = False
        # Commands waiting to be handled: a deque while there are any (None when
        # idle, as most connections are: an empty deque is 600 bytes).
        self._inbox: deque[Command] | None = None
        self._task: asyncio.Task[None] | None = None
        self._first_command_seen = False
        self.last_activity = clock.monotonic()
        self.ping_sent_at: float | None = None
        self.closed = False
        self.attached = True
        # Until ``greet``: nothing goes out, commands wait (see Gateway.open_session).
        self.greeted = False
        self._early: list[bytes] = []
        self._hold_timer: asyncio.TimerHandle | None = None

    def greet(self, hello: bytes) -> None:
        """Send ``hello``, then what was sent before it; handle the commands that came."""
        if self.greeted or self.closed:
            return
        self.greeted = True
        self.writer.push(text_frame(hello))
        early, self._early = self._early, []
        for frame in early:
            self.writer.push(frame)
        self._hold_timer = asyncio.get_running_loop().call_later(
            self._limits.resume_window, self._window_passed
        )
        if self._inbox:
            self._start_draining()

    # Outbound ------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        self.push(text_frame(payload))

    def push(self, frame: bytes) -> None:
        """A framed event (``text_frame``) for the client: out now, or after ``hello``."""
        if self.greeted:
            self.writer.push(frame)
        else:
            self._early.append(frame)

    def offer(self, conversation_id: str, seq: int, frame: bytes) -> None:
        """A live stream frame the fan-out's fast path left to the session.

        That is one while live events are held, the first of a conversation,
        or one past a gap.
        """
        if self.held is not None:
            self.hold(conversation_id, seq, frame)
        else:
            self._admit(conversation_id, seq, frame)

    def hold(self, conversation_id: str, seq: int, frame: bytes) -> None:
        """Keep a live event until the replay it may overlap is done."""
        assert self.held is not None
        self.held.append((conversation_id, seq, frame))
        self._held_bytes += len(frame)
        if self._held_bytes > self._limits.outbound_buffer_bytes:
            self._overflow()

    def _overflow(self) -> None:
        """Too much waits for this client: nothing more goes out; it resumes."""
        # The writer goes at once, not with the close: an event handed on
        # after the events dropped here would leave the client a hole.
        self.writer.discard()
        self._hold(False)
        self._filling = None
        self.connection.overflow()

    def _hold(self, on: bool) -> None:
        """Start or stop holding live events (``held`` and ``high`` change together)."""
        if on:
            if self.held is None:
                self.held = []
                self._held_bytes = 0
            self.high = None
        else:
            self.held = None
            self._held_bytes = 0
            self.high = self.handed.high

    def _window_passed(self) -> None:
        """``resume_window`` after connecting: release, unless a first command came.

        A command that arrived (perhaps a ``resume``, waiting its turn on a
        busy server) decides instead, when it is handled.
        """
        self._hold_timer = None
        if not self._inbox and self._task is None:
            self._release()

    def _stop_hold_timer(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    def _release(self) -> None:
        """Stop holding live events; deliver the held ones the client does not have."""
        held = self.held
        self._hold(False)
        self._stop_hold_timer()
        if held:
            for conversation_id, seq, frame in held:
                self._admit(conversation_id, seq, frame)

    def _admit(self, conversation_id: str, seq: int, frame: bytes) -> None:
        if not seq:  # outside the stream (receipts, list updates): nothing to order
            self.writer.push(frame)
            return
        filling = self._filling
        if filling is not None and conversation_id in filling:
            filling[conversation_id].append((seq, frame))
            self._filling_bytes += len(frame)
            if self._filling_bytes > self._limits.outbound_buffer_bytes:
                self._overflow()
            return
        if not frame:  # NOT_YOURS
            self.handed.skip_to(conversation_id, seq + 1)
            return
        verdict = self.handed.live(conversation_id, seq)
        if verdict == SEND:
            self.writer.push(frame)
        elif verdict == GAP:
            if filling is None:
                filling = self._filling = {}
            filling[conversation_id] = [(seq, frame)]
            self._filling_bytes += len(frame)
            after = self.handed.high[conversation_id]
            self._spawn(self._fill_gap(conversation_id, after, seq))

    async def _fill_gap(self, conversation_id: str, after: int, upto: int) -> None:
        """Read the events after ``after`` up to ``upto`` from the database, then go on."""
        cid = conversation_id
        self.metrics.session_gap_fills.inc()
        try:
            found = await self._chat.events_after(cid, after, min(upto - after, FILL_LIMIT))
        except Exception as exc:
            found = None
            log.warning("could not fill a gap after %s of %s: %s", after, cid, exc)
        waiting = self._filling.pop(cid, []) if self._filling else []
        if self._filling is not None and not self._filling:
            self._filling = None
        self._filling_bytes -= sum(len(frame) for _, frame in waiting)
        if self.closed:
            return
        if (not found or found[0].seq != after + 1) and self.handed.high.get(cid, 0) < upto - 1:
            # The database could not be read (or lacks what the seqs promise),
            # and no replay has covered the gap meanwhile: handing on the
            # events after it would leave the client a hole it could not tell
            # from a lost frame. Its resume brings it back.
            self.connection.fail()
            return
        # A member removed and added again gets nothing from between.
        shown = {e.seq for e in visible(found or [], self.user_id)}
        for event in found or []:
            if event.seq == upto:
                break  # the live frame that revealed the gap follows
            frame = text_frame(events.stream(event)) if event.seq in shown else NOT_YOURS
            self.offer(cid, event.seq, frame)
        for seq, frame in waiting:
            self.offer(cid, seq, frame)

    # Inbound -------------------------------------------------------------

    def on_text(self, data: bytes) -> None:
        try:
            command = parse(data, self._limits.max_frame_bytes)
        except ProtocolError as exc:
            self.metrics.refusal(exc.error.code)
            refusal = events.error(exc.request_id, exc.error.code, exc.error.message)
            if not self._inbox and self._task is None:
                self.send(refusal)  # nothing before it waits for a reply
                return
            command = Refusal(frame=refusal)
        if self._inbox is None:
            self._inbox = deque()
        self._inbox.append(command)
        if not self._paused and len(self._inbox) >= self._limits.pending_commands:
            self._paused = True
            self.connection.pause_reading(True)
        if self.greeted:
            self._start_draining()

    def _start_draining(self) -> None:
        """Handle the inbox's commands in a task, unless one already does."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    def on_close(self) -> None:
        # The command being handled is left to finish: a send whose transaction
        # is under way must still be fanned out to the other members after it
        # commits. Commands not yet started are dropped (never acked).
        self.closed = True
        self._stop_hold_timer()
        self._hold(False)
        self._filling = None
        if self._inbox is not None:
            self._inbox.clear()
        self._early.clear()

    async def _drain(self) -> None:
        CONNECTION_ID.set(self.connection_id)  # for the log records of this task
        inbox = self._inbox
        assert inbox is not None  # a drain starts when a command came
        try:
            while inbox and not self.closed:
                command = inbox.popleft()
                if isinstance(command, SendMessage):
                    batch = [command]
                    while (
                        inbox and isinstance(inbox[0], SendMessage) and len(batch) < MAX_SEND_BATCH
                    ):
                        batch.append(inbox.popleft())  # type: ignore[arg-type]
                    await self._run(self._send, batch)
                else:
                    await self._run(self._dispatch, command)
                if self._paused and len(inbox) < self._limits.pending_commands // 2:
                    self._paused = False
                    self.connection.pause_reading(False)
            if not inbox:
                self._inbox = None  # idle again (a later command makes a new one)
        finally:
            self._task = None

    async def _run(self, handler: Callable[..., object], arg: object) -> None:
        first = not self._first_command_seen
        self._first_command_seen = True
        try:
            if first and not isinstance(arg, Resume):
                self._release()
            await handler(arg)  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except HubbubError as exc:
            if isinstance(exc, Unavailable):
                log.warning("command of user %s: %s", self.user_id, exc.message)
            self._refuse(arg, exc.code, exc.message)
        except Exception:
            log.exception("command failed for user %s", self.user_id)
            self._refuse(arg, "internal", "internal error")

    def _refuse(self, arg: object, code: str, message: str) -> None:
        """Answer each command of a failed batch (or the one command) with an error."""
        commands = arg if isinstance(arg, list) else [arg]
        metrics = self.metrics
        for command in commands:
            metrics.refusal(code)
            if isinstance(command, SendMessage):
                metrics.send_failed.inc(code)
            self.send(events.error(getattr(command, "id", None), code, message))

    async def _dispatch(self, command: Command) -> None:
        chat, user = self._chat, self.user_id
        if isinstance(command, Refusal):
            self.send(command.frame)
            return
        if isinstance(command, Resume):
            await self._resume(command)
            return
        reply: dict[str, object] = {}
        if isinstance(command, EditMessage):
            reply["message"] = await chat.edit(user, command.message_id, command.body)
        elif isinstance(command, DeleteMessage):
            reply["message"] = await chat.delete(user, command.message_id)
        elif isinstance(command, Read | Delivered):
            kind = "read" if isinstance(command, Read) else "delivered"
            receipt = await chat.mark(user, command.conversation_id, kind, command.seq)
            reply["moved"] = receipt is not None
        elif isinstance(command, AddReaction | RemoveReaction):
            add = isinstance(command, AddReaction)
            count, changed = await chat.react(user, command.message_id, command.emoji, add)
            reply["changed"] = changed
            reply["count"] = count
        elif isinstance(command, Typing):
            if self.attached:  # a closed connection's typing would never be stopped
                await self._presence.typing(
                    user, command.conversation_id, command.state, self.connection_id
                )
        elif isinstance(command, Presence):
            reply.update(await self._presence.watch(self, command.subscribe, command.unsubscribe))
        elif isinstance(command, RefreshToken):
            reply["expires_at"] = await self._refresh(command.token)
        elif not isinstance(command, Ping):  # pragma: no cover - parse() knows no others
            raise AssertionError(command)
        self.send(events.ack(command.id, **reply))

    async def _refresh(self, token: str) -> str:
        """Take a new token of this connection's user: its expiry becomes the connection's."""
        identity = await self._tokens.verify(token)
        if identity.user_id != self.user_id:
            raise Forbidden("the token is another user's: this connection keeps its token")
        self.identity = identity
        self._spawn(self._chat.seen(identity))
        return iso_ms(int(identity.expires_at * 1000))

    async def _send(self, batch: list[SendMessage]) -> None:
        items = [
            SendItem(
                c.conversation_id,
                c.body,
                c.client_msg_id,
                kind=c.kind,
                reply_to=c.reply_to,
                attachments=tuple(c.attachments),
            )
            for c in batch
        ]
        metrics = self.metrics
        started = time.perf_counter()
        results = await self._chat.send(self.user_id, items)
        elapsed = time.perf_counter() - started
        for command, result in zip(batch, results, strict=True):
            if isinstance(result, HubbubError):
                metrics.send_failed.inc(result.code)
                metrics.refusal(result.code)
                self.send(events.refusal(command.id, result))
            else:
                message, created = result
                self.send(events.ack(command.id, message=message, duplicate=not created))
                (metrics.sent if created else metrics.sent_duplicate).inc()
                metrics.ack_latency.observe(elapsed)

    async def _resume(self, command: Resume) -> None:
        self._stop_hold_timer()
        self._hold(True)
        try:
            replays = await self._chat.replay(self.user_id, command.cursors)
        except BaseException:
            # Still, the client has what its cursors say: a live event further
            # on is a gap to fill, not the start of a new span.
            for cid, cursor in command.cursors.items():
                if cursor >= 0:
                    self.handed.replay(cid, cursor, cursor, [])
            self._release()
            raise
        report: dict[str, dict[str, object]] = {}
        try:
            resumes = self.metrics.resumes
            for replay in replays:
                cid = replay.conversation_id
                counted = resumes.get(replay.status)
                if counted is not None:
                    counted.inc()
                new = []
                if replay.status == "ok":
                    shown = visible(replay.events, self.user_id)
                    new = self.handed.replay(cid, command.cursors[cid], replay.last_seq, shown)
                elif replay.status == "too_far_behind":
                    self.handed.paging(cid, replay.last_seq)
                for event in new:
                    self.send(events.stream(event))
                report[cid] = {
                    "status": replay.status,
                    "last_seq": replay.last_seq,
                    "replayed": len(new),
                }
                if replay.status != "unavailable":
                    report[cid]["typing"] = await self._presence.typists(cid, self.user_id)
        finally:
            self._release()
        self.send(events.ack(command.id, conversations=report))
