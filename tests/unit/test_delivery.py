"""Fan-out to sessions over real TCP sockets: both implementations, both event loops.

``deliver_c`` (compiled) and ``deliver_py`` must agree on what each connection
receives and in what order; only the moment of writing differs (at once for an
idle connection in the compiled one, at the end of the loop pass otherwise).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import pytest
import uvloop

from hubbub.broker.base import Delivery
from hubbub.gateway import delivery
from hubbub.gateway.hub import Hub
from hubbub.gateway.writer import BacklogReporting, Flusher, Writer

Deliver = delivery.Deliver
LIMIT = 1 << 20

IMPLEMENTATIONS: list[Any] = [pytest.param(delivery.deliver_py, id="python")]
if delivery.deliver_c is not None:
    IMPLEMENTATIONS.append(pytest.param(delivery.deliver_c, id="compiled"))
elif os.environ.get("HUBBUB_REQUIRE_COMPILED"):
    raise RuntimeError("HUBBUB_REQUIRE_COMPILED is set but hubbub.gateway._delivery is not built")

LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(uvloop.new_event_loop, id="uvloop"),
]


class Peer(BacklogReporting):
    """The server side of one connection, wired as the gateway's connections are."""

    def __init__(self) -> None:
        self.writer: Writer | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.report_backlog(self.transport)  # type: ignore[arg-type]

    def backlog_writer(self) -> Writer | None:
        return self.writer


W = TypeVar("W")


class FakeSession(Generic[W]):
    """What the fan-out reads of a session, around a real or a stand-in writer."""

    def __init__(self, writer: W) -> None:
        self.writer = writer
        self.held: list[Any] | None = None
        self.high: dict[str, int] | None = {}


class Rig:
    """N server-side sessions on loopback TCP, each with a plain client socket."""

    def __init__(self, flusher: Flusher) -> None:
        self.flusher = flusher
        self.clients: dict[str, socket.socket] = {}
        self.sessions: dict[str, FakeSession[Writer]] = {}
        self.by_user: dict[str, list[Any]] = {}
        self.failed: list[tuple[Any, BaseException]] = []

    async def add(
        self, user: str, server: socket.socket, *, rcvbuf: int = 0
    ) -> FakeSession[Writer]:
        loop = asyncio.get_running_loop()
        client = socket.socket()
        if rcvbuf:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        accepted.setblocking(False)
        if rcvbuf:
            accepted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
        _, peer = await loop.connect_accepted_socket(Peer, accepted)
        assert peer.transport is not None
        writer = Writer(peer.transport, self.flusher, LIMIT, lambda: None)
        peer.writer = writer
        session = FakeSession(writer)
        self.clients[user + str(len(self.by_user.get(user, [])))] = client
        self.sessions[user + str(len(self.by_user.get(user, [])))] = session
        self.by_user.setdefault(user, []).append(session)
        return session

    def received(self, key: str) -> bytes:
        client = self.clients[key]
        chunks = []
        while True:
            try:
                chunk = client.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    async def fill(self, deliver: Deliver, user: str, count: int) -> list[bytes]:
        """Deliver ``count`` 3000-byte frames to a user, one event-loop pass each."""
        frames = [bytes([65 + i % 26]) * 3000 for i in range(count)]
        for frame in frames:
            deliver(self.by_user, (user,), frame, True, self.failed)
            await asyncio.sleep(0)
        await settle()
        return frames

    async def receive_all(self, key: str, size: int, got: bytes = b"") -> bytes:
        """Read from one client until ``size`` bytes have come (5 s at most)."""
        deadline = asyncio.get_running_loop().time() + 5
        while len(got) < size:
            assert asyncio.get_running_loop().time() < deadline, len(got)
            await asyncio.sleep(0.005)
            got += self.received(key)
        return got

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        for sessions in self.by_user.values():
            for session in sessions:
                session.writer.transport.abort()


def run(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
    scenario: Callable[[Rig], Awaitable[None]],
) -> None:
    """Run a scenario on a fresh rig; close every socket even when it fails.

    (An unclosed transport makes uvloop's loop close hang instead of the test
    failing.)
    """

    async def main() -> None:
        rig = Rig(Flusher(asyncio.get_running_loop()))
        try:
            await scenario(rig)
        finally:
            rig.close()
        assert rig.failed == []

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server
    server.close()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_every_session_of_every_recipient_gets_the_frame_once(
    deliver: Deliver, loop_factory: Any, listener: socket.socket
) -> None:
    async def scenario(rig: Rig) -> None:
        for user in ("ann", "ann", "bob", "eve"):
            await rig.add(user, listener)
        held = deliver(rig.by_user, ("ann", "bob", "nobody"), b"F1", True, rig.failed)
        assert held == []
        await settle()
        assert [rig.received(k) for k in ("ann0", "ann1", "bob0", "eve0")] == [
            b"F1",
            b"F1",
            b"F1",
            b"",
        ]

    run(loop_factory, scenario)


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_held_sessions_are_returned_and_get_nothing(
    deliver: Deliver, loop_factory: Any, listener: socket.socket
) -> None:
    async def scenario(rig: Rig) -> None:
        waiting = await rig.add("ann", listener)
        await rig.add("bob", listener)
        waiting.held = []
        held: Sequence[object] = deliver(rig.by_user, ("ann", "bob"), b"F1", True, rig.failed)
        assert held == [waiting]
        await settle()
        assert rig.received("ann0") == b"" and rig.received("bob0") == b"F1"

    run(loop_factory, scenario)


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_a_busy_writer_keeps_its_order(
    deliver: Deliver, loop_factory: Any, listener: socket.socket
) -> None:
    async def scenario(rig: Rig) -> None:
        session = await rig.add("ann", listener)
        session.writer.push(b"queued;")  # e.g. an ack earlier in this pass
        assert session.writer.busy
        deliver(rig.by_user, ("ann",), b"event;", True, rig.failed)
        deliver(rig.by_user, ("ann",), b"later;", False, rig.failed)
        await settle()
        assert rig.received("ann0") == b"queued;event;later;"
        assert not session.writer.busy

    run(loop_factory, scenario)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_compiled_sends_at_once_only_when_direct(
    loop_factory: Any, listener: socket.socket
) -> None:
    if delivery.deliver_c is None:
        pytest.skip("the compiled fan-out is not built")
    deliver_c = delivery.deliver_c

    async def scenario(rig: Rig) -> None:
        await rig.add("ann", listener)
        deliver_c(rig.by_user, ("ann",), b"now;", True, rig.failed)
        deliver_c(rig.by_user, ("ann",), b"queued;", False, rig.failed)
        # No loop pass has run: only the direct send can be on the wire (a
        # loopback send has reached the peer's socket when it returns).
        first = rig.received("ann0")
        await settle()
        assert first == b"now;"
        assert rig.received("ann0") == b"queued;"

    run(loop_factory, scenario)


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_what_the_kernel_refuses_is_queued_in_order(
    deliver: Deliver, loop_factory: Any, listener: socket.socket
) -> None:
    """A receiver that stops reading: partial sends, a backlog, nothing lost or reordered."""

    async def scenario(rig: Rig) -> None:
        session = await rig.add("ann", listener, rcvbuf=4096)
        frames = await rig.fill(deliver, "ann", 60)
        assert session.writer.busy  # the transport holds what the kernel refused
        got = await rig.receive_all("ann0", sum(map(len, frames)))
        assert got == b"".join(frames)
        await settle()
        assert not session.writer.busy

    run(loop_factory, scenario)


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_a_frame_never_overtakes_bytes_waiting_in_the_transport(
    deliver: Deliver, loop_factory: Any, listener: socket.socket
) -> None:
    """The socket has room again but the transport still holds bytes: queue behind them."""

    async def scenario(rig: Rig) -> None:
        session = await rig.add("ann", listener, rcvbuf=4096)
        # Less than a default high-water mark (64 KiB) stays in the transport.
        frames = await rig.fill(deliver, "ann", 15)
        assert session.writer.transport.get_write_buffer_size() > 0
        # Make room in the socket without letting the event loop write the
        # transport's bytes, then deliver at once.
        got = rig.received("ann0")
        marker = b"!" * 100
        deliver(rig.by_user, ("ann",), marker, True, rig.failed)
        got = await rig.receive_all("ann0", sum(map(len, frames)) + len(marker), got)
        assert got == b"".join(frames) + marker

    run(loop_factory, scenario)


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_closing_or_discarded_connections_get_nothing(
    deliver: Deliver, loop_factory: Any, listener: socket.socket
) -> None:
    async def scenario(rig: Rig) -> None:
        closing = await rig.add("ann", listener)
        discarded = await rig.add("bob", listener)
        await rig.add("cat", listener)
        closing.writer.transport.close()
        discarded.writer.discard()
        deliver(rig.by_user, ("ann", "bob", "cat"), b"F1", True, rig.failed)
        await settle()
        assert rig.received("ann0") == b""  # closed: the client sees end of stream only
        assert rig.received("bob0") == b""
        assert rig.received("cat0") == b"F1"

    run(loop_factory, scenario)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_a_flush_that_fails_drops_that_queue_only(
    loop_factory: Any, listener: socket.socket, caplog: Any
) -> None:
    class FailingTransport:
        def __init__(self, real: asyncio.WriteTransport) -> None:
            self.real = real

        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes) -> None:
            raise ConnectionError("gone")

    async def scenario(rig: Rig) -> None:
        bad = await rig.add("ann", listener)
        await rig.add("bob", listener)
        real = bad.writer.transport
        bad.writer.transport = FailingTransport(real)  # type: ignore[assignment]
        try:
            rig.flusher.sent_direct()  # this pass sends nothing at once
            delivery.deliver(rig.by_user, ("ann", "bob"), b"F1", False, rig.failed)
            await settle()
        finally:
            bad.writer.transport = real
        assert bad.writer.closed and rig.received("ann0") == b""
        assert rig.received("bob0") == b"F1"
        assert "flushing a connection failed" in caplog.text
        assert rig.flusher.direct  # the next pass may send at once again

    run(loop_factory, scenario)


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_a_failing_session_is_reported_and_the_others_still_get_the_frame(
    deliver: Deliver, loop_factory: Any, listener: socket.socket
) -> None:
    class Broken(RuntimeError):
        pass

    class BrokenWriter:
        busy = False  # the compiled path asks first: then the fd, which fails

        @property
        def fd(self) -> int:
            raise Broken("fd")

        def push(self, frame: bytes) -> None:
            raise Broken("push")

    async def scenario(rig: Rig) -> None:
        for user in ("ann", "bob"):
            await rig.add(user, listener)
        broken = FakeSession(BrokenWriter())
        rig.by_user["bob"].insert(0, broken)
        failed: list[tuple[Any, BaseException]] = []
        held = deliver(rig.by_user, ["bob", "ann"], b"F1", True, failed)
        assert held == []
        assert [(session, type(exc)) for session, exc in failed] == [(broken, Broken)]
        rig.by_user["bob"].remove(broken)
        await settle()
        assert [rig.received(k) for k in ("ann0", "bob0")] == [b"F1", b"F1"]

    run(loop_factory, scenario)


def test_the_hub_closes_a_connection_whose_delivery_failed(caplog: Any) -> None:
    class Writer_:
        def __init__(self, broken: bool) -> None:
            self.broken = broken
            self.frames: list[bytes] = []
            self.discarded = False

        def push(self, frame: bytes) -> None:
            if self.broken:
                raise RuntimeError("broken")
            self.frames.append(frame)

        def discard(self) -> None:
            self.discarded = True

    class Connection_:
        failed = 0

        def fail(self) -> None:
            self.failed += 1

    hub = Hub()
    sessions = []
    for user, broken in (("ann", True), ("bob", False)):
        session = FakeSession(Writer_(broken))
        session.user_id, session.connection = user, Connection_()  # type: ignore[attr-defined]
        session.high = {"c1": 0}
        hub.add(session)  # type: ignore[arg-type]
        sessions.append(session)
    hub.deliver(Delivery("c1", 1, ("ann", "bob"), b"{}"))
    ann, bob = sessions
    assert ann.writer.discarded and ann.connection.failed == 1  # type: ignore[attr-defined]
    assert len(bob.writer.frames) == 1 and bob.connection.failed == 0  # type: ignore[attr-defined]
    assert "delivery to a connection of ann failed" in caplog.text


@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_recipients_changed_during_the_walk_do_not_matter(deliver: Deliver) -> None:
    """A writer that empties the recipients list it is part of (never done, but safe)."""
    recipients = ["ann", "bob", "cat"]
    pushed: list[str] = []

    class ClearingWriter:
        busy = True  # queued, not sent at once

        def __init__(self, name: str) -> None:
            self.name = name

        def push(self, frame: bytes) -> None:
            pushed.append(self.name)
            recipients.clear()

    by_user: dict[str, list[Any]] = {u: [FakeSession(ClearingWriter(u))] for u in recipients}
    failed: list[tuple[Any, BaseException]] = []
    assert deliver(by_user, recipients, b"F", True, failed) == []
    assert pushed == ["ann", "bob", "cat"] and failed == []


@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_bad_arguments_are_type_errors(deliver: Deliver) -> None:
    with pytest.raises((TypeError, AttributeError)):
        deliver([], ("ann",), b"F", True, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        deliver({}, 5, b"F", True, [])  # type: ignore[arg-type]


class ListWriter:
    busy = True  # queued, not sent at once

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)


@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_a_stream_event_reaches_each_session_once_and_in_order(deliver: Deliver) -> None:
    names = ("next", "dup", "new", "gap", "held")
    sessions = {n: FakeSession(ListWriter()) for n in names}
    sessions["next"].high = {"c": 4}
    sessions["dup"].high = {"c": 9}
    sessions["gap"].high = {"c": 2}
    sessions["new"].high = {"other": 4}
    sessions["held"].high = None  # a holding session's (see Session._hold)
    sessions["held"].held = []
    by_user: dict[str, list[Any]] = {n: [s] for n, s in sessions.items()}
    failed: list[tuple[Any, BaseException]] = []

    slow: Sequence[object] = deliver(by_user, names, b"F5", True, failed, "c", 5)
    # Those that must decide for themselves come back, untouched.
    assert slow == [sessions["new"], sessions["gap"], sessions["held"]] and failed == []
    frames = {n: s.writer.frames for n, s in sessions.items()}
    assert frames == {"next": [b"F5"], "dup": [], "new": [], "gap": [], "held": []}
    highs = {n: (s.high or {}).get("c") for n, s in sessions.items()}
    assert highs == {"next": 5, "dup": 9, "new": None, "gap": 2, "held": None}

    # Outside the stream (seq 0, or no seq given): no filter, only held sessions wait.
    unfiltered: Sequence[object] = deliver(by_user, names, b"R", True, failed, "c", 0)
    assert unfiltered == [sessions["held"]]
    unsequenced: Sequence[object] = deliver(by_user, names, b"P", True, failed)
    assert unsequenced == [sessions["held"]]
    assert all(s.writer.frames[-2:] == [b"R", b"P"] for n, s in sessions.items() if n != "held")


@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_a_session_whose_high_is_broken_is_reported(deliver: Deliver) -> None:
    broken = FakeSession(ListWriter())
    broken.high = {"c": "x"}  # type: ignore[dict-item]  # not an int: what is tested
    fine = FakeSession(ListWriter())
    fine.high = {"c": 0}
    by_user: dict[str, list[Any]] = {"a": [broken], "b": [fine]}
    failed: list[tuple[Any, BaseException]] = []
    assert deliver(by_user, ("a", "b"), b"F", True, failed, "c", 1) == []
    assert [s for s, _ in failed] == [broken]
    assert fine.writer.frames == [b"F"]


COUNTED: list[Any] = [pytest.param(delivery.deliver_py, delivery.handed_py, id="python")]
if delivery.deliver_c is not None:
    COUNTED.append(pytest.param(delivery.deliver_c, delivery.handed, id="compiled"))


class FailingWriter(ListWriter):
    def push(self, frame: bytes) -> None:
        raise OSError("gone")


@pytest.mark.parametrize(("deliver", "handed"), COUNTED)
def test_handed_counts_the_frames_given_to_writers(
    deliver: Deliver, handed: Callable[[], int]
) -> None:
    sessions = {n: FakeSession(ListWriter()) for n in ("next", "dup", "gap", "plain")}
    sessions["next"].high = {"c": 4}
    sessions["dup"].high = {"c": 9}
    sessions["gap"].high = {"c": 2}
    broken = FakeSession(FailingWriter())
    by_user: dict[str, list[Any]] = {n: [s] for n, s in sessions.items()}
    by_user["broken"] = [broken]
    failed: list[tuple[Any, BaseException]] = []
    before = handed()
    deliver(by_user, ("next", "dup", "gap"), b"F5", True, failed, "c", 5)
    assert handed() - before == 1  # not the duplicate, not the gap
    deliver(by_user, ("plain", "broken", "nobody"), b"P", True, failed)
    assert handed() - before == 2 and [s for s, _ in failed] == [broken]


def test_the_hub_counts_what_it_hands_to_sessions() -> None:
    hub = Hub()
    held = FakeSession(ListWriter())
    held.high = None
    held.held = []
    taker = FakeSession(ListWriter())
    taker.high = {"c": 0}
    taker.user_id, held.user_id = "ann", "bob"  # type: ignore[attr-defined]
    hub.add(taker)  # type: ignore[arg-type]
    hub.add(held)  # type: ignore[arg-type]
    offered: list[int] = []
    held.offer = lambda cid, seq, frame: offered.append(seq)  # type: ignore[attr-defined]
    hub.deliver(Delivery("c", 1, ("ann", "bob"), b"{}"))
    assert hub.handed == 2 and offered == [1]  # one sent, one left to its session
