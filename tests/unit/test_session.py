"""One session on its own: command order, replies, holding, resume, exactly once, gaps.

Most tests drive a real ``Session`` over a fake transport (``Link`` and
``Outbound``) and fake services (``Chat``, ``Typists``) whose answers the test
decides and can keep waiting. Background work the session starts (a gap fill)
is handed to the test's own ``spawn``, which runs it when the test says so.
The last tests put sessions on the real services over SQLite.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import msgspec
import pytest

from hubbub.auth import Identity
from hubbub.clock import ManualClock, iso_ms
from hubbub.config import Limits, Settings
from hubbub.errors import (
    Forbidden,
    HubbubError,
    Invalid,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from hubbub.gateway.connection import HEARTBEAT_TIMEOUT, UNAUTHORIZED
from hubbub.gateway.session import FILL_LIMIT, MAX_SEND_BATCH, NOT_YOURS, Session
from hubbub.gateway.stream import Stream
from hubbub.limits.settings import Quotas
from hubbub.models import Message, Receipt, Replay, SendItem, StreamEvent
from hubbub.protocol import events
from hubbub.protocol.wsframe import text_frame, unframe
from hubbub.server import Hubbub
from hubbub.service.watches import Watcher
from tests.support import until

if TYPE_CHECKING:
    from hubbub.gateway.server import Gateway

Frame = dict[str, Any]


# Fakes -------------------------------------------------------------------


class FakeOutbound:
    """An outbound queue that keeps what it was given (``sent``), in order."""

    # Read by the fan-out: never a direct send (as an HTTP stream's writer).
    busy = True
    fd = -1
    transport = None

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[bytes] = []
        self.dropped: list[bytes] = []  # pushed after discard: never reaches the client
        self.flushes = 0

    def push(self, data: bytes) -> None:
        (self.dropped if self.closed else self.sent).append(data)

    def flush(self) -> None:
        self.flushes += 1

    def discard(self) -> None:
        self.closed = True


class FakeLink:
    """A transport that records what the session asked of it."""

    def __init__(self, out: FakeOutbound) -> None:
        self.out = out
        self.closes: list[tuple[int, str]] = []
        self.pings = 0
        self.overflows = 0
        self.fails = 0
        self.pauses: list[tuple[bool, int]] = []  # (pause, frames sent by then)

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    def ping(self) -> None:
        self.pings += 1

    def overflow(self) -> None:
        self.overflows += 1

    def fail(self) -> None:
        self.fails += 1

    def pause_reading(self, pause: bool) -> None:
        self.pauses.append((pause, len(self.out.sent)))


class Calls:
    """Shared by the fake services: what was called, gates, and failures to raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: dict[str, BaseException] = {}

    def hold(self, name: str) -> asyncio.Event:
        """Keep calls of ``name`` waiting until the returned event is set."""
        gate = self.gates[name] = asyncio.Event()
        return gate

    async def enter(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        gate = self.gates.get(name)
        if gate is not None:
            await gate.wait()
        exc = self.fail.get(name)
        if exc is not None:
            raise exc

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.calls if c[0] == name]


class FakeChat(Calls):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[SendItem]] = []
        self.refuse: dict[str, HubbubError] = {}  # by client_msg_id
        self.duplicates: set[str] = set()
        self.replays: list[Replay] = []
        self.stream: list[StreamEvent] = []  # what events_after reads
        self.receipt: Receipt | None = Receipt(
            conversation_id="c", user_id="alice", read_seq=3, delivered_seq=3
        )
        self.reaction = (1, True)
        self._seq = 0

    async def send(
        self, user: str, items: list[SendItem]
    ) -> Sequence[tuple[Message, bool] | HubbubError]:
        self.batches.append(list(items))
        await self.enter("send", user, len(items))
        out: list[tuple[Message, bool] | HubbubError] = []
        for item in items:
            refused = self.refuse.get(item.client_msg_id)
            if refused is not None:
                out.append(refused)
                continue
            self._seq += 1
            msg = message(item.conversation_id, self._seq, item.body, f"m{self._seq}")
            out.append((msg, item.client_msg_id not in self.duplicates))
        return out

    async def edit(self, user: str, message_id: str, body: str) -> Message:
        await self.enter("edit", user, message_id, body)
        return message("c", 1, body, message_id)

    async def delete(self, user: str, message_id: str) -> Message:
        await self.enter("delete", user, message_id)
        return message("c", 1, "", message_id)

    async def mark(self, user: str, conversation_id: str, kind: str, seq: int) -> Receipt | None:
        await self.enter("mark", user, conversation_id, kind, seq)
        return self.receipt

    async def react(self, user: str, message_id: str, emoji: str, add: bool) -> tuple[int, bool]:
        await self.enter("react", user, message_id, emoji, add)
        return self.reaction

    async def replay(self, user: str, cursors: dict[str, int]) -> Sequence[Replay]:
        await self.enter("replay", user, dict(cursors))
        return self.replays

    async def events_after(self, cid: str, after: int, limit: int) -> Sequence[StreamEvent]:
        await self.enter("events_after", cid, after, limit)
        found = [e for e in self.stream if e.conversation_id == cid and e.seq > after]
        return found[:limit]

    async def seen(self, identity: Identity) -> None:
        await self.enter("seen", identity)


class FakeTokens(Calls):
    """Tokens as the test names them: each one an identity, or the error it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.known: dict[str, Identity | HubbubError] = {}

    async def verify(self, token: str | None) -> Identity:
        await self.enter("verify", token)
        found = self.known.get(token or "", Unauthorized("invalid token"))
        if isinstance(found, HubbubError):
            raise found
        return found


class FakeTypists(Calls):
    def __init__(self) -> None:
        super().__init__()
        self.typing_in: dict[str, list[str]] = {}

    async def typing(self, user: str, cid: str, state: str, connection_id: str) -> None:
        await self.enter("typing", user, cid, state, connection_id)

    async def typists(self, cid: str, viewer: str) -> list[str]:
        await self.enter("typists", cid, viewer)
        return [u for u in self.typing_in.get(cid, []) if u != viewer]

    async def watch(
        self, watcher: Watcher, subscribe: list[str], unsubscribe: list[str]
    ) -> dict[str, object]:
        await self.enter("watch", watcher.user_id, subscribe, unsubscribe)
        return {"presence": [], "refused": [], "watching": len(subscribe)}


# Frames ------------------------------------------------------------------


def message(cid: str, seq: int, body: str = "hi", mid: str | None = None) -> Message:
    return Message(
        id=mid or f"m-{cid}-{seq}",
        conversation_id=cid,
        seq=seq,
        sender_id="bob",
        body=body,
        client_msg_id=None,
        created_at="2026-01-02T03:04:05.678Z",
    )


def event(cid: str, seq: int, type_: str = "message.new", user: str = "") -> StreamEvent:
    if type_ == "message.new":
        return StreamEvent(conversation_id=cid, seq=seq, type=type_, message=message(cid, seq))
    return StreamEvent(conversation_id=cid, seq=seq, type=type_, data={"user_id": user})


def live(cid: str, seq: int) -> bytes:
    """A live stream frame as the fan-out hands it on (WebSocket-framed)."""
    return text_frame(events.stream(event(cid, seq)))


def decode(chunks: list[bytes]) -> list[Frame]:
    return [
        cast(Frame, msgspec.json.decode(payload)) for chunk in chunks for payload in unframe(chunk)
    ]


def brief(frame: Frame) -> str:
    kind = frame["type"]
    if kind == "ack":
        return f"ack {frame['id']}"
    if kind == "error":
        return f"error {frame['id']} {frame['code']}"
    if "seq" in frame and "conversation_id" in frame:
        return f"{kind} {frame['conversation_id']}:{frame['seq']}"
    return str(kind)


# The rig -----------------------------------------------------------------

RIGS: list[Rig] = []


class Rig:
    """A session of ``alice`` (connection ``conn-1``) on fakes."""

    def __init__(self, greeted: bool = True, **limits: Any) -> None:
        self.clock = ManualClock()
        self.clock.advance(42.0)
        self.limits = Limits(**{"resume_window": 3600.0, **limits})
        self.chat = FakeChat()
        self.presence = FakeTypists()
        self.tokens = FakeTokens()
        self.out = FakeOutbound()
        self.link = FakeLink(self.out)
        self.spawned: list[Coroutine[Any, Any, None]] = []
        self.session = Session(
            Identity("alice", "Alice", self.clock.now() + 3600),
            self.out,
            self.link,
            "conn-1",
            chat=self.chat,
            presence=self.presence,
            limits=self.limits,
            clock=self.clock,
            spawn=self.spawned.append,
            tokens=self.tokens,
        )
        if greeted:
            self.session.greet(b'{"type":"hello"}')
            self.out.sent.clear()
        self._taken = 0
        RIGS.append(self)

    def command(self, **fields: Any) -> None:
        self.session.on_text(msgspec.json.encode(fields))

    def raw(self, data: bytes) -> None:
        self.session.on_text(data)

    def offer(self, cid: str, seq: int) -> None:
        self.session.offer(cid, seq, live(cid, seq))

    def frames(self) -> list[Frame]:
        return decode(self.out.sent)

    def seen(self) -> list[str]:
        return [brief(f) for f in self.frames()]

    def take(self) -> list[str]:
        """What was sent since the last ``take``."""
        seen = self.seen()
        new, self._taken = seen[self._taken :], len(seen)
        return new

    def last(self) -> Frame:
        return self.frames()[-1]

    async def fill(self) -> None:
        """Run the background work the session started (gap fills), in order."""
        while self.spawned:
            await self.spawned.pop(0)

    async def close(self) -> None:
        for gate in [*self.chat.gates.values(), *self.presence.gates.values()]:
            gate.set()
        for coro in self.spawned:
            coro.close()
        self.session.on_close()
        await settle()


async def settle() -> None:
    """Let the session's command task run as far as the fakes let it."""
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture(autouse=True)
async def _close_rigs() -> AsyncIterator[None]:
    yield
    while RIGS:
        await RIGS.pop().close()


def send(n: int | str, cid: str = "c", **more: Any) -> dict[str, Any]:
    return {
        "id": n,
        "type": "message.send",
        "conversation_id": cid,
        "body": f"body {n}",
        "client_msg_id": f"k{n}",
        **more,
    }


# Construction and activity -----------------------------------------------


async def test_a_new_session_holds_live_events_and_counts_activity_from_its_clock() -> None:
    r = Rig()
    s = r.session
    assert s.user_id == "alice" and s.connection_id == "conn-1"
    assert s.last_activity == 42.0 and s.ping_sent_at is None
    assert s.held == [] and s.high is None
    assert s.attached and not s.closed and s.greeted
    s.send(b'{"type":"pong"}')
    assert r.seen() == ["pong"]


async def test_until_greeted_nothing_goes_out_and_commands_wait() -> None:
    r = Rig(greeted=False, resume_window=0.0)
    s = r.session
    r.command(id=1, type="ping")
    s.send(b'{"type":"resync"}')
    r.offer("c", 1)
    await settle()
    assert r.seen() == [] and not s.greeted
    assert s.held is not None  # the resume window runs from hello
    s.greet(b'{"type":"hello"}')
    await settle()
    assert r.seen() == ["hello", "resync", "message.new c:1", "ack 1"]
    s.greet(b'{"type":"hello"}')  # once only
    assert r.seen().count("hello") == 1


async def test_a_session_closed_before_hello_is_never_greeted() -> None:
    r = Rig(greeted=False)
    r.session.send(b'{"type":"resync"}')
    r.session.on_close()
    r.session.greet(b'{"type":"hello"}')
    assert r.seen() == [] and not r.session.greeted


# Parsing -----------------------------------------------------------------


async def test_refused_frames_are_answered_with_their_codes_and_the_session_goes_on() -> None:
    r = Rig(max_frame_bytes=200)
    r.raw(b"{not json")
    r.raw(b"[1, 2]")
    r.command(id=1)
    r.command(id=2, type="message.fly")
    r.command(id=3, type="message.send", conversation_id="c")  # no client_msg_id
    r.command(id=[1], type="ping")
    r.command(id=4, type="message.send", body="x" * 300)
    r.command(id="r", type="typing", conversation_id="c", state="sideways")
    # Nothing before them waits for a reply: answered at once, no task needed.
    assert r.take() == [
        "error None invalid",
        "error None invalid",
        "error 1 invalid",
        "error 2 unknown_type",
        "error 3 invalid",
        "error None invalid",
        "error 4 too_large",
        "error r invalid",
    ]
    assert "client_msg_id" in r.frames()[4]["message"]
    r.command(id=5, type="ping")
    await settle()
    assert r.take() == ["ack 5"]
    assert r.link.closes == [] and r.link.fails == 0 and not r.session.closed


async def test_a_refused_frame_waits_its_turn_behind_the_commands_before_it() -> None:
    r = Rig()
    gate = r.chat.hold("edit")
    r.command(id=1, type="message.edit", message_id="m1", body="new")
    r.raw(b"{")
    r.command(id=2, type="ping")
    await settle()
    assert r.seen() == []  # the edit is under way; the refusal is not answered before it
    gate.set()
    await settle()
    assert r.seen() == ["ack 1", "error None invalid", "ack 2"]


# Sending -----------------------------------------------------------------


async def test_a_send_is_acked_with_the_stored_message() -> None:
    r = Rig()
    r.command(**send("a", kind="image", reply_to="m0", attachments=["u1", "u2"]))
    await settle()
    assert r.chat.batches == [
        [SendItem("c", "body a", "ka", kind="image", reply_to="m0", attachments=("u1", "u2"))]
    ]
    assert r.chat.named("send") == [("alice", 1)]
    ack = r.last()
    assert ack["type"] == "ack" and ack["id"] == "a"
    assert ack["duplicate"] is False
    assert ack["message"]["id"] == "m1" and ack["message"]["body"] == "body a"


async def test_a_batch_answers_each_send_duplicate_refused_or_stored() -> None:
    r = Rig()
    gate = r.chat.hold("send")
    r.command(**send(0))
    await settle()
    r.chat.duplicates.add("k2")
    r.chat.refuse["k3"] = Forbidden("you are not a member of this conversation")
    for n in (1, 2, 3, 4):
        r.command(**send(n))
    gate.set()
    await settle()
    assert [len(b) for b in r.chat.batches] == [1, 4]
    assert r.seen() == ["ack 0", "ack 1", "ack 2", "error 3 forbidden", "ack 4"]
    frames = r.frames()
    assert [f.get("duplicate") for f in frames] == [False, False, True, None, False]
    assert frames[3]["message"] == "you are not a member of this conversation"


async def test_replies_come_in_arrival_order() -> None:
    r = Rig()
    gate = r.chat.hold("edit")
    r.command(id=1, type="message.edit", message_id="m1", body="x")
    r.command(id=2, type="ping")
    r.command(**send(3))
    r.command(id=4, type="read", conversation_id="c", seq=3)
    await settle()
    assert r.seen() == []  # the ping does not overtake the edit
    assert r.chat.batches == []  # nor does the send
    gate.set()
    await settle()
    assert r.seen() == ["ack 1", "ack 2", "ack 3", "ack 4"]
    assert [c[0] for c in r.chat.calls] == ["edit", "send", "mark"]


async def test_sends_waiting_together_are_stored_in_one_batch_in_order() -> None:
    r = Rig()
    gate = r.chat.hold("send")
    r.command(**send(1))
    await settle()
    for n in (2, 3, 4):
        r.command(**send(n))
    r.command(id=5, type="ping")  # a batch never reaches past another command
    r.command(**send(6))
    r.command(**send(7))
    gate.set()
    await settle()
    assert [[i.client_msg_id for i in b] for b in r.chat.batches] == [
        ["k1"],
        ["k2", "k3", "k4"],
        ["k6", "k7"],
    ]
    assert r.seen() == [f"ack {n}" for n in range(1, 8)]
    assert [f["message"]["body"] for f in r.frames() if "message" in f] == [
        f"body {n}" for n in (1, 2, 3, 4, 6, 7)
    ]


async def test_a_batch_holds_at_most_max_send_batch() -> None:
    r = Rig()
    gate = r.chat.hold("send")
    r.command(**send(0))
    await settle()
    for n in range(1, MAX_SEND_BATCH + 7):
        r.command(**send(n))
    gate.set()
    await settle()
    assert [len(b) for b in r.chat.batches] == [1, MAX_SEND_BATCH, 6]
    assert r.seen() == [f"ack {n}" for n in range(MAX_SEND_BATCH + 7)]


@pytest.mark.parametrize(
    ("failure", "code", "text"),
    [
        (
            Unavailable("the database does not answer"),
            "unavailable",
            "the database does not answer",
        ),
        (RuntimeError("boom"), "internal", "internal error"),
    ],
)
async def test_a_failed_batch_answers_every_send_in_it(
    failure: Exception, code: str, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    r = Rig()
    gate = r.chat.hold("send")
    r.command(**send(1))
    await settle()
    r.command(**send(2))
    r.command(**send(3))
    r.chat.fail["send"] = failure
    with caplog.at_level(logging.WARNING, logger="hubbub.gateway"):
        gate.set()
        await settle()
    assert r.seen() == [f"error 1 {code}", f"error 2 {code}", f"error 3 {code}"]
    assert {f["message"] for f in r.frames()} == {text}
    assert len(caplog.records) == 2 and all("alice" in m.getMessage() for m in caplog.records)
    del r.chat.fail["send"]
    r.command(id=4, type="ping")
    await settle()
    assert r.take()[-1] == "ack 4"


async def test_a_cancelled_command_is_not_answered_and_the_next_one_is() -> None:
    r = Rig()
    r.chat.fail["edit"] = asyncio.CancelledError()
    r.command(id=1, type="message.edit", message_id="m", body="x")
    await settle()
    assert r.seen() == []  # cancelled, not an internal error
    r.command(id=2, type="ping")
    await settle()
    assert r.seen() == ["ack 2"]


# Other commands ----------------------------------------------------------


async def test_edit_delete_receipts_and_reactions_are_acked_with_their_results() -> None:
    r = Rig()
    r.command(id=1, type="message.edit", message_id="m7", body="better")
    r.command(id=2, type="message.delete", message_id="m7")
    r.command(id=3, type="read", conversation_id="c", seq=3)
    await settle()
    r.chat.receipt = None  # the pointer was already there
    r.command(id=4, type="delivered", conversation_id="c", seq=2)
    r.command(id=5, type="reaction.add", message_id="m7", emoji="+1")
    await settle()
    r.chat.reaction = (0, False)
    r.command(id=6, type="reaction.remove", message_id="m7", emoji="+1")
    await settle()
    assert r.chat.calls == [
        ("edit", "alice", "m7", "better"),
        ("delete", "alice", "m7"),
        ("mark", "alice", "c", "read", 3),
        ("mark", "alice", "c", "delivered", 2),
        ("react", "alice", "m7", "+1", True),
        ("react", "alice", "m7", "+1", False),
    ]
    f = r.frames()
    assert [brief(x) for x in f] == [f"ack {n}" for n in range(1, 7)]
    assert f[0]["message"]["body"] == "better" and f[1]["message"]["body"] == ""
    assert (f[2]["moved"], f[3]["moved"]) == (True, False)
    assert (f[4]["changed"], f[4]["count"]) == (True, 1)
    assert (f[5]["changed"], f[5]["count"]) == (False, 0)


async def test_a_refusal_of_the_service_is_an_error_with_its_code_and_request_id() -> None:
    r = Rig()
    r.chat.fail["edit"] = NotFound("no such message")
    r.command(id="e", type="message.edit", message_id="nope", body="x")
    r.command(id="p", type="ping")
    await settle()
    assert r.seen() == ["error e not_found", "ack p"]
    assert r.frames()[0]["message"] == "no such message"


async def test_a_token_of_the_same_user_becomes_the_sessions_token() -> None:
    r = Rig()
    before = r.session.identity
    later = Identity("alice", "Alice B.", before.expires_at + 7200)
    r.tokens.known["fresh"] = later
    r.command(id="t", type="token.refresh", token="fresh")
    await settle()
    assert r.seen() == ["ack t"]
    assert r.last()["expires_at"] == iso_ms(int(later.expires_at * 1000))
    assert r.session.identity == later and r.session.user_id == "alice"
    await r.fill()  # the new name is recorded
    assert r.chat.named("seen") == [(later,)]


async def test_a_token_of_another_user_or_a_bad_one_leaves_the_session_as_it_was() -> None:
    r = Rig()
    before = r.session.identity
    r.tokens.known["bob's"] = Identity("bob", None, before.expires_at + 7200)
    r.tokens.known["unfetchable"] = Unavailable("the keys could not be fetched")
    r.command(id=1, type="token.refresh", token="bob's")
    r.command(id=2, type="token.refresh", token="garbage")
    r.command(id=3, type="token.refresh", token="unfetchable")
    r.command(id=4, type="token.refresh")
    r.command(id=5, type="token.refresh", token=5)
    await settle()
    assert r.seen() == [
        "error 1 forbidden",
        "error 2 unauthorized",
        "error 3 unavailable",
        "error 4 invalid",
        "error 5 invalid",
    ]
    assert r.session.identity is before
    assert r.tokens.named("verify") == [("bob's",), ("garbage",), ("unfetchable",)]
    assert r.spawned == []


# Typing ------------------------------------------------------------------


async def test_typing_goes_to_presence_with_the_connection_id() -> None:
    r = Rig()
    r.command(id=1, type="typing", conversation_id="c", state="start")
    r.command(id=2, type="typing", conversation_id="c", state="stop")
    await settle()
    assert r.presence.named("typing") == [
        ("alice", "c", "start", "conn-1"),
        ("alice", "c", "stop", "conn-1"),
    ]
    assert r.seen() == ["ack 1", "ack 2"]


async def test_typing_refused_by_presence_is_an_error() -> None:
    r = Rig()
    r.presence.fail["typing"] = RateLimited("at most 10 typing frames per second")
    r.command(id=1, type="typing", conversation_id="c", state="start")
    await settle()
    assert r.seen() == ["error 1 rate_limited"]


async def test_typing_of_a_detached_session_is_acked_but_not_passed_on() -> None:
    # A closing connection's typing would never be stopped.
    r = Rig()
    r.session.attached = False
    r.command(id=1, type="typing", conversation_id="c", state="start")
    await settle()
    assert r.presence.calls == []
    assert r.seen() == ["ack 1"]


# The pending-commands limit ----------------------------------------------


async def test_reading_pauses_at_pending_commands_and_resumes_at_half() -> None:
    r = Rig(pending_commands=4)
    gate = r.chat.hold("edit")
    r.command(id=1, type="message.edit", message_id="m", body="x")
    await settle()  # the edit is under way; the rest wait
    for n in (2, 3, 4):
        r.command(id=n, type="ping")
    assert r.link.pauses == []
    r.command(id=5, type="ping")  # the fourth waiting
    assert r.link.pauses == [(True, 0)]
    r.command(id=6, type="ping")
    assert r.link.pauses == [(True, 0)]  # paused once
    gate.set()
    await settle()
    # Resumed once fewer than 4 // 2 wait: after the fifth reply, one left.
    assert r.link.pauses == [(True, 0), (False, 5)]
    assert r.seen() == [f"ack {n}" for n in range(1, 7)]


class StreamGateway:
    """What a ``Stream`` needs of the gateway."""

    def __init__(self, limits: Limits, clock: ManualClock) -> None:
        self.limits = limits
        self.clock = clock
        self.streams: dict[str, Stream] = {}
        self.detached: list[Session] = []

    def detach(self, session: Session) -> None:
        self.detached.append(session)


async def test_on_an_http_stream_commands_past_the_limit_are_rate_limited() -> None:
    r = Rig(pending_commands=2)
    stream = Stream(cast("Gateway", StreamGateway(r.limits, r.clock)))
    session = Session(
        Identity("alice", None, r.clock.now() + 60),
        stream.writer,
        stream,
        "stream-1",
        chat=r.chat,
        presence=r.presence,
        limits=r.limits,
        clock=r.clock,
        spawn=r.spawned.append,
        tokens=r.tokens,
    )
    session.greet(b'{"type":"hello"}')
    stream.session = session
    body: list[bytes] = []

    async def take(chunk: bytes) -> None:
        body.append(chunk)

    task = asyncio.create_task(stream.run(take))
    gate = r.chat.hold("edit")
    first = b'{"id":1,"type":"message.edit","message_id":"m","body":"x"}'
    assert stream.commands(first + b'\n{"id":2,"type":"ping"}\n\n{"id":3,"type":"ping"}\n')
    await settle()
    assert stream.paused  # two waiting: the third was refused at once
    gate.set()
    await settle()
    assert not stream.paused
    assert stream.commands(b'{"id":4,"type":"ping"}')
    await settle()
    stream.close(1000, "bye")
    assert await asyncio.wait_for(task, 5)
    lines = b"".join(body).split(b"\n\n")
    frames = [cast(Frame, msgspec.json.decode(x[6:])) for x in lines if x.startswith(b"data: ")]
    assert [brief(f) for f in frames[:5]] == [
        "hello",
        "error 3 rate_limited",
        "ack 1",
        "ack 2",
        "ack 4",
    ]
    assert session.closed and stream.session is None
    assert not stream.commands(b'{"id":5,"type":"ping"}')


# Holding -----------------------------------------------------------------


async def test_live_events_wait_for_the_first_command_then_go_before_its_reply() -> None:
    r = Rig()
    r.offer("c", 1)
    r.offer("c", 2)
    r.session.offer("c", 0, text_frame(events.event("receipt", conversation_id="c")))
    assert r.seen() == [] and r.session.held is not None and len(r.session.held) == 3
    r.command(id=1, type="ping")
    await settle()
    assert r.seen() == ["message.new c:1", "message.new c:2", "receipt", "ack 1"]
    s = r.session
    assert s.held is None and s.high == {"c": 2}
    assert s.high is s.handed.high  # the fan-out moves it in place


async def test_live_events_are_released_when_the_resume_window_passes() -> None:
    r = Rig(resume_window=0.0)
    r.offer("c", 1)
    assert r.seen() == []
    await settle()
    assert r.seen() == ["message.new c:1"]
    assert r.session.held is None
    r.offer("c", 2)  # no longer held
    assert r.take()[-1] == "message.new c:2"


async def test_a_resume_that_came_in_the_window_decides_when_the_window_passes() -> None:
    r = Rig(resume_window=0.0)
    r.offer("c", 3)
    await asyncio.sleep(0)  # the window passes in the next loop pass
    gate = r.chat.hold("replay")
    r.chat.replays = [Replay(conversation_id="c", status="ok", last_seq=4, events=[])]
    r.chat.replays[0].events.extend([event("c", 3), event("c", 4)])
    r.command(id=1, type="resume", cursors={"c": 2})
    await settle()
    assert r.seen() == []  # still held: the resume decides
    gate.set()
    await settle()
    assert r.seen() == ["message.new c:3", "message.new c:4", "ack 1"]


async def test_too_much_held_closes_as_too_slow_and_sends_nothing_of_it() -> None:
    r = Rig(outbound_buffer_bytes=len(live("c", 1)) * 2)
    r.offer("c", 1)
    r.offer("c", 2)
    assert r.link.overflows == 0
    r.offer("c", 3)
    assert r.link.overflows == 1
    assert r.out.closed and r.out.sent == []
    s = r.session
    assert s.held is None and s.high is s.handed.high


# Resume ------------------------------------------------------------------


Status = Literal["ok", "too_far_behind", "unavailable"]


def replay(cid: str, status: Status, last_seq: int, seqs: Sequence[int] = ()) -> Replay:
    return Replay(
        conversation_id=cid,
        status=status,
        last_seq=last_seq,
        events=[event(cid, s) for s in seqs],
    )


async def test_resume_replays_then_releases_what_came_live_meanwhile() -> None:
    r = Rig()
    r.presence.typing_in["c"] = ["bob", "alice"]
    r.chat.replays = [replay("c", "ok", 5, [3, 4, 5])]
    gate = r.chat.hold("replay")
    r.command(id=1, type="resume", cursors={"c": 2})
    await settle()
    r.offer("c", 5)  # live, while the replay runs: the replay has it too
    r.offer("c", 6)
    assert r.seen() == []
    gate.set()
    await settle()
    assert r.seen() == [
        "message.new c:3",
        "message.new c:4",
        "message.new c:5",
        "message.new c:6",
        "ack 1",
    ]
    assert r.last()["conversations"] == {
        "c": {"status": "ok", "last_seq": 5, "replayed": 3, "typing": ["bob"]}
    }
    assert r.chat.named("replay") == [("alice", {"c": 2})]
    assert r.presence.named("typists") == [("c", "alice")]
    r.offer("c", 4)
    r.offer("c", 6)
    r.offer("c", 7)
    assert r.take()[-1:] == ["message.new c:7"] and r.seen().count("message.new c:6") == 1


async def test_resume_holds_again_on_a_session_already_released() -> None:
    r = Rig()
    r.command(id=1, type="ping")
    await settle()
    r.offer("c", 1)
    gate = r.chat.hold("replay")
    r.chat.replays = [replay("c", "ok", 3, [2, 3])]
    r.command(id=2, type="resume", cursors={"c": 1})
    await settle()
    assert r.session.high is None  # holding: the fan-out hands everything to the session
    r.offer("c", 2)
    r.offer("c", 4)
    assert r.take() == ["ack 1", "message.new c:1"]
    gate.set()
    await settle()
    assert r.take() == ["message.new c:2", "message.new c:3", "message.new c:4", "ack 2"]


async def test_a_second_resume_brings_only_what_was_not_handed() -> None:
    r = Rig()
    r.command(id=1, type="ping")
    await settle()
    for seq in (3, 4, 5):
        r.offer("c", seq)
    r.chat.replays = [replay("c", "ok", 7, range(1, 8))]
    r.command(id=2, type="resume", cursors={"c": 0})
    await settle()
    assert r.take() == [
        "ack 1",
        "message.new c:3",
        "message.new c:4",
        "message.new c:5",
        "message.new c:1",
        "message.new c:2",
        "message.new c:6",
        "message.new c:7",
        "ack 2",
    ]
    assert r.last()["conversations"]["c"]["replayed"] == 4


async def test_a_replay_shows_nothing_from_while_the_client_was_not_a_member() -> None:
    r = Rig()
    r.chat.replays = [
        Replay(
            conversation_id="c",
            status="ok",
            last_seq=5,
            events=[
                event("c", 1),
                event("c", 2, "member.left", "alice"),
                event("c", 3),
                event("c", 4, "member.joined", "alice"),
                event("c", 5),
            ],
        )
    ]
    r.command(id=1, type="resume", cursors={"c": 0})
    await settle()
    assert r.seen() == [
        "message.new c:1",
        "member.left c:2",
        "member.joined c:4",
        "message.new c:5",
        "ack 1",
    ]
    assert r.last()["conversations"]["c"]["replayed"] == 4
    r.offer("c", 3)  # neither late
    assert r.seen()[-1] == "ack 1"


async def test_too_far_behind_drops_live_events_up_to_where_to_page() -> None:
    r = Rig()
    r.chat.replays = [replay("c", "too_far_behind", 5000)]
    r.command(id=1, type="resume", cursors={"c": 10})
    await settle()
    assert r.take() == ["ack 1"]
    assert r.last()["conversations"]["c"] == {
        "status": "too_far_behind",
        "last_seq": 5000,
        "replayed": 0,
        "typing": [],
    }
    for seq in (11, 4999, 5000, 5001):
        r.offer("c", seq)
    assert r.take() == ["message.new c:5001"]
    assert r.spawned == []


async def test_an_unavailable_conversation_is_reported_without_typing_and_left_alone() -> None:
    r = Rig()
    r.chat.replays = [replay("c", "unavailable", 0), replay("d", "ok", 2, [2])]
    r.command(id=1, type="resume", cursors={"c": 3, "d": 1})
    await settle()
    report = r.last()["conversations"]
    assert report["c"] == {"status": "unavailable", "last_seq": 0, "replayed": 0}
    assert report["d"]["status"] == "ok" and report["d"]["replayed"] == 1
    assert r.presence.named("typists") == [("d", "alice")]
    r.offer("c", 9)  # nothing known of c: its first live event starts the span
    assert r.take()[-1] == "message.new c:9"
    assert r.spawned == []


async def test_a_failed_resume_is_an_error_and_the_cursors_still_count() -> None:
    r = Rig()
    r.offer("c", 2)  # held, and older than the cursor
    r.chat.fail["replay"] = Unavailable("the database does not answer")
    r.command(id=1, type="resume", cursors={"c": 4, "d": 0})
    await settle()
    assert r.take() == ["error 1 unavailable"]
    s = r.session
    assert s.held is None and s.high == {"c": 4, "d": 0}
    r.offer("c", 5)
    r.offer("d", 1)
    assert r.take() == ["message.new c:5", "message.new d:1"]
    r.offer("c", 7)  # past what the cursor said: a gap, not a new span
    assert r.take() == [] and len(r.spawned) == 1


async def test_a_resume_with_a_cursor_the_service_refuses_starts_no_span_for_it() -> None:
    r = Rig()
    r.chat.fail["replay"] = Invalid("cursors must not be negative")
    r.command(id=1, type="resume", cursors={"c": -1})  # refused by the parser already
    await settle()
    assert r.take() == ["error 1 invalid"]
    assert r.session.handed.high == {}


async def test_a_resume_failing_after_its_replay_still_releases() -> None:
    r = Rig()
    r.chat.replays = [replay("c", "ok", 2, [1, 2])]
    r.presence.fail["typists"] = RuntimeError("boom")
    r.offer("c", 3)
    r.command(id=1, type="resume", cursors={"c": 0})
    await settle()
    assert r.take() == ["message.new c:1", "message.new c:2", "message.new c:3", "error 1 internal"]
    assert r.session.held is None


# Exactly once ------------------------------------------------------------


async def test_a_live_event_at_or_below_what_was_handed_is_never_sent() -> None:
    r = Rig()
    r.chat.replays = [replay("c", "ok", 5, [4, 5])]
    r.command(id=1, type="resume", cursors={"c": 3})
    await settle()
    r.take()
    for seq in (1, 3, 4, 5, 5, 6, 6, 7):
        r.offer("c", seq)
    assert r.take() == ["message.new c:6", "message.new c:7"]
    assert r.session.handed.low["c"] == 4 and r.session.high == {"c": 7}


async def test_a_frame_not_for_this_client_moves_the_span_on_without_a_gap() -> None:
    r = Rig()
    r.command(id=1, type="ping")
    await settle()
    r.offer("c", 3)
    r.session.offer("c", 4, NOT_YOURS)
    r.offer("c", 5)
    assert r.take() == ["ack 1", "message.new c:3", "message.new c:5"]
    assert r.spawned == [] and r.out.dropped == []


# Gaps --------------------------------------------------------------------


async def released(**limits: Any) -> Rig:
    r = Rig(**limits)
    r.command(id=0, type="ping")
    await settle()
    r.take()
    return r


async def test_a_gap_is_filled_from_the_database_before_anything_after_it() -> None:
    r = await released()
    r.chat.stream = [event("c", s) for s in range(1, 10)]
    for stored in r.chat.stream:
        assert stored.message is not None
        stored.message.body = "stored"
    r.offer("c", 1)
    r.offer("c", 4)  # 2 and 3 are missing
    r.offer("c", 5)
    r.offer("d", 1)  # another conversation is not held up
    assert r.take() == ["message.new c:1", "message.new d:1"]
    assert len(r.spawned) == 1
    await r.fill()
    assert r.chat.named("events_after") == [("c", 1, 3)]
    assert r.take() == ["message.new c:2", "message.new c:3", "message.new c:4", "message.new c:5"]
    # What the database read stands in for the missing ones; the live frames follow.
    assert [f["message"]["body"] for f in r.frames()[-4:]] == ["stored", "stored", "hi", "hi"]
    r.offer("c", 5)
    r.offer("c", 6)
    assert r.take() == ["message.new c:6"]
    assert r.link.fails == 0


async def test_gaps_in_two_conversations_are_filled_each_on_its_own() -> None:
    r = await released()
    r.chat.stream = [event(c, s) for c in "cd" for s in range(1, 6)]
    for cid in "cd":
        r.offer(cid, 1)
        r.offer(cid, 3)
    assert len(r.spawned) == 2
    await r.spawned.pop(0)
    assert r.take() == ["message.new c:1", "message.new d:1", "message.new c:2", "message.new c:3"]
    r.offer("d", 4)  # still waits behind d's gap
    assert r.take() == []
    await r.fill()
    assert r.take() == ["message.new d:2", "message.new d:3", "message.new d:4"]


async def test_a_gap_longer_than_fill_limit_is_filled_in_steps() -> None:
    r = await released()
    top = FILL_LIMIT + 5
    r.chat.stream = [event("c", s) for s in range(1, top + 1)]
    r.offer("c", 1)
    r.offer("c", top)
    await r.fill()
    assert r.chat.named("events_after") == [("c", 1, FILL_LIMIT), ("c", FILL_LIMIT + 1, 4)]
    seqs = [int(x.rsplit(":", 1)[1]) for x in r.take()]
    assert seqs == list(range(1, top + 1))


async def test_a_gap_fill_hides_what_came_while_the_client_was_not_a_member() -> None:
    r = await released()
    r.chat.stream = [
        event("c", 2, "member.left", "alice"),
        event("c", 3),
        event("c", 4, "member.joined", "alice"),
        event("c", 5),
    ]
    r.offer("c", 1)
    r.offer("c", 5)
    await r.fill()
    assert r.take() == [
        "message.new c:1",
        "member.left c:2",
        "member.joined c:4",
        "message.new c:5",
    ]
    assert r.link.fails == 0


@pytest.mark.parametrize("broken", ["unreadable", "short"])
async def test_a_gap_that_cannot_be_filled_fails_the_connection(
    broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    r = await released()
    if broken == "unreadable":
        r.chat.fail["events_after"] = Unavailable("the database does not answer")
    else:
        r.chat.stream = [event("c", 3)]  # 2 is not there
    r.offer("c", 1)
    r.offer("c", 4)
    r.offer("c", 5)
    with caplog.at_level(logging.WARNING, logger="hubbub.gateway"):
        await r.fill()
    assert r.link.fails == 1
    assert r.take() == ["message.new c:1"]  # never a hole: nothing after it
    assert any("gap" in m.getMessage() for m in caplog.records) == (broken == "unreadable")


async def test_a_gap_covered_by_a_resume_meanwhile_needs_no_fill() -> None:
    r = await released()
    gate = r.chat.hold("events_after")
    r.chat.fail["events_after"] = Unavailable("the database does not answer")
    r.offer("c", 1)
    r.offer("c", 4)
    fill = asyncio.ensure_future(r.spawned.pop())
    await settle()
    r.chat.replays = [replay("c", "ok", 3, [2, 3])]
    r.command(id=1, type="resume", cursors={"c": 1})
    await settle()
    gate.set()
    await fill
    assert r.link.fails == 0
    assert r.take() == [
        "message.new c:1",
        "message.new c:2",
        "message.new c:3",
        "ack 1",
        "message.new c:4",
    ]


async def test_a_gap_filled_after_the_session_closed_sends_nothing() -> None:
    r = await released()
    r.chat.stream = [event("c", s) for s in range(1, 5)]
    r.offer("c", 1)
    r.offer("c", 4)
    r.session.on_close()
    await r.fill()
    assert r.take() == ["message.new c:1"] and r.link.fails == 0


async def test_too_much_waiting_behind_a_gap_closes_as_too_slow() -> None:
    r = await released(outbound_buffer_bytes=len(live("c", 1)) * 2)
    r.chat.stream = [event("c", s) for s in range(1, 9)]
    r.offer("c", 1)
    r.offer("c", 3)
    r.offer("c", 4)
    assert r.link.overflows == 0
    r.offer("c", 5)
    assert r.link.overflows == 1 and r.out.closed
    await r.fill()
    assert r.take() == ["message.new c:1"] and r.link.fails == 0


# Closing -----------------------------------------------------------------


async def test_on_close_finishes_the_command_under_way_and_drops_the_rest() -> None:
    r = Rig()
    gate = r.chat.hold("send")
    r.command(**send(1))
    await settle()
    r.command(**send(2))
    r.command(id=3, type="ping")
    r.session.on_close()
    s = r.session
    assert s.closed and s.held is None and s.high is s.handed.high
    gate.set()
    await settle()
    assert [len(b) for b in r.chat.batches] == [1]  # the send under way was stored
    assert r.seen() == ["ack 1"]  # the others were never handled


# With the real services --------------------------------------------------


@dataclass
class Real:
    app: Hubbub
    clock: ManualClock

    def open(self, user: str, expires_in: float = 3600.0) -> tuple[Session, FakeOutbound, FakeLink]:
        out = FakeOutbound()
        link = FakeLink(out)
        identity = Identity(user, user.title(), self.clock.now() + expires_in)
        session = self.app.gateway.open_session(identity, out, link, f"conn-{user}")
        return session, out, link


@pytest.fixture
async def real(tmp_path: Path) -> AsyncIterator[Real]:
    clock = ManualClock()
    settings = Settings(
        data_dir=tmp_path,
        jwt_secret="s" * 32,
        log_level="warning",
        heartbeat_interval=30,
        heartbeat_timeout=10,
        limits=Limits(resume_limit=3, resume_window=3600.0),
        quotas=Quotas.off(),
    )
    app = Hubbub(settings, clock)
    await app.start()
    try:
        yield Real(app, clock)
    finally:
        for session in list(app.gateway.hub.sessions()):
            session.on_close()
            app.gateway.detach(session)
        await app.presence.drain()
        await app.stop()


def briefs(out: FakeOutbound) -> list[str]:
    return [brief(f) for f in decode(out.sent)]


def command(session: Session, **fields: Any) -> None:
    session.on_text(msgspec.json.encode(fields))


def acked(out: FakeOutbound, rid: object) -> Iterator[Frame]:
    return (f for f in decode(out.sent) if f["type"] in ("ack", "error") and f["id"] == rid)


async def reply(out: FakeOutbound, rid: object) -> Frame:
    await until(lambda: any(acked(out, rid)))
    return next(acked(out, rid))


async def test_the_composed_services_are_wired_in_their_constructors(real: Real) -> None:
    assert real.app.chat.presence is real.app.presence


async def test_with_the_real_services_a_message_reaches_the_other_member_once(
    real: Real,
) -> None:
    group = await real.app.conversations.create("alice", "group", "g", ["bob"])
    cid = group.id
    alice, alice_out, _ = real.open("alice")
    bob, bob_out, _ = real.open("bob")
    assert briefs(bob_out)[0] == "hello"
    command(bob, id="r1", type="resume", cursors={cid: 0})
    first = (await reply(bob_out, "r1"))["conversations"][cid]
    assert first["status"] == "ok" and first["typing"] == []
    top = first["last_seq"]

    command(alice, id="t", type="typing", conversation_id=cid, state="start")
    assert (await reply(alice_out, "t"))["type"] == "ack"
    command(alice, **send("s", cid))
    sent = await reply(alice_out, "s")
    assert sent["type"] == "ack" and sent["message"]["seq"] == top + 1
    await until(lambda: f"message.new {cid}:{top + 1}" in briefs(bob_out))
    await real.app.presence.drain()
    got = decode(bob_out.sent)
    assert [f["state"] for f in got if f["type"] == "typing"] == ["start", "stop"]

    command(bob, id="r2", type="resume", cursors={cid: top})
    again = (await reply(bob_out, "r2"))["conversations"][cid]
    assert again["status"] == "ok" and again["last_seq"] == top + 1
    assert again["replayed"] == 0  # everything was handed already
    assert briefs(bob_out).count(f"message.new {cid}:{top + 1}") == 1

    command(alice, id="t2", type="typing", conversation_id=cid, state="start")
    await reply(alice_out, "t2")
    command(bob, id="r3", type="resume", cursors={cid: top + 1})
    assert (await reply(bob_out, "r3"))["conversations"][cid]["typing"] == ["alice"]


async def test_with_the_real_store_too_far_behind_and_a_gap_fill(real: Real) -> None:
    group = await real.app.conversations.create("alice", "group", "g", ["bob"])
    cid = group.id
    alice, alice_out, _ = real.open("alice")
    for n in range(4):
        command(alice, **send(n, cid))
    last = await reply(alice_out, 3)
    top = last["message"]["seq"]
    bob, bob_out, _ = real.open("bob")
    command(bob, id="r", type="resume", cursors={cid: 0})
    report = (await reply(bob_out, "r"))["conversations"][cid]
    assert report == {"status": "too_far_behind", "last_seq": top, "replayed": 0, "typing": []}

    # Bob's live stream lags: two messages are stored, and only the second
    # reaches his session; the first is read from the database.
    real.app.gateway.hub.remove(bob)
    command(alice, **send(4, cid))
    command(alice, **send(5, cid))
    late = await reply(alice_out, 5)
    second = msgspec.convert(late["message"], Message)
    frame = text_frame(
        events.stream(
            StreamEvent(conversation_id=cid, seq=second.seq, type="message.new", message=second)
        )
    )
    bob.offer(cid, second.seq, frame)
    await until(lambda: f"message.new {cid}:{second.seq}" in briefs(bob_out))
    news = [b for b in briefs(bob_out) if b.startswith("message.new")]
    assert news == [f"message.new {cid}:{top + 1}", f"message.new {cid}:{top + 2}"]


async def test_the_heartbeat_pings_an_idle_session_and_closes_a_silent_one(real: Real) -> None:
    quiet, _, quiet_link = real.open("alice")
    busy, _, busy_link = real.open("bob")
    assert quiet.last_activity == real.clock.monotonic()
    real.clock.advance(20)
    busy.last_activity = real.clock.monotonic()  # a frame came
    real.clock.advance(10)
    real.app.gateway.sweep()
    assert quiet_link.pings == 1 and quiet.ping_sent_at == real.clock.monotonic()
    assert busy_link.pings == 0
    real.clock.advance(9)
    real.app.gateway.sweep()
    assert quiet_link.closes == [] and quiet_link.pings == 1
    real.clock.advance(1)
    real.app.gateway.sweep()
    assert quiet_link.closes == [(HEARTBEAT_TIMEOUT, "no answer to ping")]
    assert busy_link.closes == []


async def test_a_session_whose_token_expires_is_closed(real: Real) -> None:
    _, _, link = real.open("alice", expires_in=5)
    real.clock.advance(4)
    real.app.gateway.sweep()
    assert link.closes == []
    real.clock.advance(1)
    real.app.gateway.sweep()
    assert link.closes == [(UNAUTHORIZED, "token expired")]
