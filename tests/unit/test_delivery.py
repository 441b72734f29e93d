"""Fan-out to sessions over real TCP sockets: both implementations, both event loops.

``deliver_c`` (compiled) and ``deliver_py`` must agree on what each connection
receives and in what order; only the moment of writing differs (at once for an
idle connection in the compiled one, at the end of the loop pass otherwise).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvloop

from hubbub.gateway import delivery
from hubbub.gateway.writer import Flusher, Writer

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


class Peer(asyncio.Protocol):
    """The server side of one connection, as the gateway wires it."""

    def __init__(self) -> None:
        self.writer: Writer | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=0)  # type: ignore[union-attr]

    def pause_writing(self) -> None:
        if self.writer is not None:
            self.writer.backlog(True)

    def resume_writing(self) -> None:
        if self.writer is not None:
            self.writer.backlog(False)


class FakeSession:
    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.held: list[Any] | None = None


class Rig:
    """N server-side sessions on loopback TCP, each with a plain client socket."""

    def __init__(self, flusher: Flusher) -> None:
        self.flusher = flusher
        self.clients: dict[str, socket.socket] = {}
        self.sessions: dict[str, FakeSession] = {}
        self.by_user: dict[str, list[Any]] = {}

    async def add(self, user: str, server: socket.socket, *, rcvbuf: int = 0) -> FakeSession:
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

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def run(loop_factory: Callable[[], asyncio.AbstractEventLoop], scenario: Awaitable[None]) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(scenario)  # type: ignore[arg-type]


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
    async def scenario() -> None:
        rig = Rig(Flusher(asyncio.get_running_loop()))
        for user in ("ann", "ann", "bob", "eve"):
            await rig.add(user, listener)
        held = deliver(rig.by_user, ("ann", "bob", "nobody"), b"F1", True)
        assert held == []
        await settle()
        assert [rig.received(k) for k in ("ann0", "ann1", "bob0", "eve0")] == [
            b"F1",
            b"F1",
            b"F1",
            b"",
        ]
        rig.close()

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_held_sessions_are_returned_and_get_nothing(
    deliver: Deliver, loop_factory: Any, listener: socket.socket
) -> None:
    async def scenario() -> None:
        rig = Rig(Flusher(asyncio.get_running_loop()))
        waiting = await rig.add("ann", listener)
        await rig.add("bob", listener)
        waiting.held = []
        held = deliver(rig.by_user, ("ann", "bob"), b"F1", True)
        assert held == [waiting]
        await settle()
        assert rig.received("ann0") == b"" and rig.received("bob0") == b"F1"
        rig.close()

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_a_busy_writer_keeps_its_order(
    deliver: Deliver, loop_factory: Any, listener: socket.socket
) -> None:
    async def scenario() -> None:
        rig = Rig(Flusher(asyncio.get_running_loop()))
        session = await rig.add("ann", listener)
        session.writer.push(b"queued;")  # e.g. an ack earlier in this pass
        assert session.writer.busy
        deliver(rig.by_user, ("ann",), b"event;", True)
        deliver(rig.by_user, ("ann",), b"later;", False)
        await settle()
        assert rig.received("ann0") == b"queued;event;later;"
        assert not session.writer.busy
        rig.close()

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_compiled_sends_at_once_only_when_direct(
    loop_factory: Any, listener: socket.socket
) -> None:
    if delivery.deliver_c is None:
        pytest.skip("the compiled fan-out is not built")
    deliver_c = delivery.deliver_c

    async def scenario() -> None:
        rig = Rig(Flusher(asyncio.get_running_loop()))
        await rig.add("ann", listener)
        deliver_c(rig.by_user, ("ann",), b"now;", True)
        deliver_c(rig.by_user, ("ann",), b"queued;", False)
        # No loop pass has run: only the direct send can be on the wire (a
        # loopback send has reached the peer's socket when it returns).
        first = rig.received("ann0")
        await settle()
        assert first == b"now;"
        assert rig.received("ann0") == b"queued;"
        rig.close()

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_what_the_kernel_refuses_is_queued_in_order(
    deliver: Deliver, loop_factory: Any, listener: socket.socket
) -> None:
    """A receiver that stops reading: partial sends, a backlog, nothing lost or reordered."""

    async def scenario() -> None:
        rig = Rig(Flusher(asyncio.get_running_loop()))
        session = await rig.add("ann", listener, rcvbuf=4096)
        frames = [bytes([65 + i % 26]) * 3000 for i in range(60)]
        for frame in frames:
            deliver(rig.by_user, ("ann",), frame, True)
            await asyncio.sleep(0)
        await settle()
        assert session.writer.busy  # the transport holds what the kernel refused
        got = b""
        deadline = asyncio.get_running_loop().time() + 5
        while len(got) < sum(map(len, frames)):
            assert asyncio.get_running_loop().time() < deadline, len(got)
            got += rig.received("ann0")
            await asyncio.sleep(0.005)
        assert got == b"".join(frames)
        await settle()
        assert not session.writer.busy
        rig.close()

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_closing_or_discarded_connections_get_nothing(
    deliver: Deliver, loop_factory: Any, listener: socket.socket
) -> None:
    async def scenario() -> None:
        rig = Rig(Flusher(asyncio.get_running_loop()))
        closing = await rig.add("ann", listener)
        discarded = await rig.add("bob", listener)
        await rig.add("cat", listener)
        closing.writer.transport.close()
        discarded.writer.discard()
        deliver(rig.by_user, ("ann", "bob", "cat"), b"F1", True)
        await settle()
        assert rig.received("ann0") == b""  # closed: the client sees end of stream only
        assert rig.received("bob0") == b""
        assert rig.received("cat0") == b"F1"
        rig.close()

    run(loop_factory, scenario())


@pytest.mark.parametrize("deliver", IMPLEMENTATIONS)
def test_bad_arguments_are_type_errors(deliver: Deliver) -> None:
    with pytest.raises((TypeError, AttributeError)):
        deliver([], ("ann",), b"F", True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        deliver({}, 5, b"F", True)  # type: ignore[arg-type]
