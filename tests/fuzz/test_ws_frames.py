"""Hostile WebSocket frames against one real server: documented answers only.

Each example is a batch of frames sent in one go on one of a few connections
(near-valid commands of every type, and garbage), then a ``ping`` whose ack
marks the end of the batch's replies. Every frame with an id is answered once,
in order, with an ``ack`` or an ``error`` of a documented code, never
``internal``; the connection stays open, except after a frame the protocol
closes it for (invalid UTF-8: 1007; beyond the hard ceiling: 1009), which ends
some batches; the server logs no traceback and its memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from hypothesis import example, given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.fuzz.hostile import (
    BAD_UTF8,
    HARD_CEILING,
    MULTIPLIER,
    Draft,
    Frame,
    closer,
    domain_codes,
    fuzz_settings,
    item,
    rest_errors,
    ws_close_codes,
    ws_error_codes,
)
from tests.fuzz.world import assert_healthy, contexts, rss_bytes
from tests.support import ServerProcess, new_id

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
BATCH = 50
EXAMPLES = 200  # x BATCH: 10,000 frames a run (times HUBBUB_FUZZ_EXAMPLES)
USERS = 3
WS_CODES = ws_error_codes()
SERVER_TYPES = {
    "ack",
    "error",
    "message.new",
    "message.edited",
    "message.deleted",
    "member.joined",
    "member.left",
    "member.role_changed",
    "conversation.renamed",
    "receipt",
    "reaction",
    "typing",
    "presence",
    "conversation.created",
    "conversation.updated",
    "resync",
}
CLOSES_EXPECTED = {1007, 1009}


@dataclass
class Link:
    """One connection of one user, opened again when the server closed it."""

    url: str
    ctx: dict[str, Any]
    ws: ClientConnection | None = None

    async def open(self) -> ClientConnection:
        if self.ws is None:
            ws = await websockets.connect(
                f"{self.url}?token={self.ctx['token']}", max_queue=None, max_size=None
            )
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert hello["type"] == "hello", hello
            self.ws = ws
        return self.ws

    async def drop(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            await ws.close()


@dataclass
class Tally:
    frames: int = 0  # sent
    unhandled: int = 0  # not sent: after a frame that closed the connection
    replies: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    connections: int = 0


class Fuzzer:
    def __init__(self, server: ServerProcess, ctxs: list[dict[str, Any]]) -> None:
        self.links = [Link(server.ws_url, ctx) for ctx in ctxs]
        self.tally = Tally()
        self.batches = 0

    async def batch(self, drafts: list[Draft | Frame], last: Frame | None) -> None:
        self.batches += 1
        link = self.links[self.batches % len(self.links)]
        if link.ws is None:
            self.tally.connections += 1
        ws = await link.open()
        frames = [
            d.render(link.ctx, f"r{self.batches}-{i}") if isinstance(d, Draft) else d
            for i, d in enumerate(drafts)
        ]
        huge = next((i for i, f in enumerate(frames) if f.size() > HARD_CEILING), None)
        if huge is not None:  # several long fields: the server closes there (1009)
            self.tally.unhandled += len(frames) - huge - 1 + int(last is not None)
            frames, last = frames[:huge], frames[huge]
        sync = f"sync-{self.batches}-{new_id()[:6]}"
        ending = last or Frame(json.dumps({"type": "ping", "id": sync}))
        try:
            await self._exchange(ws, frames, ending, sync, closing=last is not None)
        except BaseException:
            await link.drop()  # a failure leaves the connection in no known state
            raise
        if last is not None:
            link.ws = None
            await ws.close()

    async def _exchange(
        self, ws: ClientConnection, frames: list[Frame], last: Frame, sync: str, closing: bool
    ) -> None:
        sent = 0
        try:
            for frame in [*frames, last]:
                await ws.send(frame.data, text=not frame.binary)
                sent += 1
        except ConnectionClosed:
            pass  # read what came before the close below
        self.tally.frames += min(sent, len(frames) + int(closing))
        self.tally.unhandled += len(frames) + 1 - sent
        expected = [f.rid for f in frames if f.rid is not None]
        answered: list[str] = []
        code: int | None = None
        try:
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if reply.get("id") == sync and not closing:
                    assert reply["type"] == "ack", reply
                    break
                self._check(reply, frames, answered)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
        if not closing:
            assert code is None, f"closed with {code}: {_show(frames)}"
            unanswered = [f for f in frames if f.rid in set(expected) - set(answered)]
            assert answered == expected, (
                f"replies out of order or missing: {_missing(expected, answered)}; "
                f"unanswered: {_show(unanswered)}; all: {_show(frames)}"
            )
            return
        assert code in CLOSES_EXPECTED, f"closed with {code} after {last.size()} bytes"
        assert code == (1009 if last.valid_utf8 else 1007), (code, last.data[:80])
        self.tally.closes[code] += 1
        # Replies come in order up to the close: a prefix of what was asked.
        assert answered == expected[: len(answered)], _missing(expected, answered)

    def _check(self, reply: dict[str, Any], frames: list[Frame], answered: list[str]) -> None:
        kind = reply.get("type")
        assert kind in SERVER_TYPES, reply
        if kind not in ("ack", "error"):
            return
        if kind == "error":
            assert reply["code"] in WS_CODES, reply
            assert reply["code"] != "internal", (reply, _show(frames))
            assert isinstance(reply["message"], str), reply
            self.tally.replies[reply["code"]] += 1
        else:
            self.tally.replies["ack"] += 1
        rid = reply.get("id")
        if rid is not None:
            answered.append(rid)

    async def close(self) -> None:
        for link in self.links:
            await link.drop()


def _missing(expected: list[str], answered: list[str]) -> str:
    differ = sorted(set(expected) ^ set(answered))[:5]
    return f"expected {len(expected)}, got {len(answered)}: {differ}"


def _show(frames: list[Frame]) -> str:
    return "; ".join(repr(f.data[:200]) for f in frames)


def test_documented_error_codes_cover_the_domain() -> None:
    """Every code hubbub may raise is documented, for frames or for HTTP answers."""
    assert domain_codes() <= WS_CODES | {code for _, code in rest_errors()}
    assert {"invalid", "unknown_type", "too_large", "internal"} <= WS_CODES
    assert ws_close_codes() >= CLOSES_EXPECTED


def test_hostile_frames_get_documented_answers(server: ServerProcess) -> None:
    users = [f"fz{i}-{new_id()[:6]}" for i in range(USERS)]
    runner = asyncio.Runner()
    fuzzer = Fuzzer(server, contexts(server, users))
    started = time.monotonic()
    try:
        runner.run(fuzzer.batch([], None))  # warm: connected, first frames handled
        rss_before = rss_bytes(server)

        ping = Frame('{"type":"ping","id":"before-close"}', "before-close")

        @fuzz_settings(EXAMPLES)
        @given(st.lists(item, min_size=BATCH, max_size=BATCH), closer())
        @example([ping], Frame(BAD_UTF8[0]))
        @example([ping], Frame('{"type":"ping","x":"' + "a" * HARD_CEILING + '"}'))
        def batch(drafts: list[Draft | Frame], last: Frame | None) -> None:
            runner.run(fuzzer.batch(drafts, last))

        batch()
        runner.run(fuzzer.batch([], None))  # still answers after everything
    finally:
        runner.run(fuzzer.close())
        runner.close()
    grown = assert_healthy(server, rss_before)
    tally = fuzzer.tally
    print(
        f"\nws fuzz: {tally.frames} frames ({tally.unhandled} unsent after a close) in "
        f"{time.monotonic() - started:.1f} s over {tally.connections} connections; "
        f"closes {dict(tally.closes)}; replies {dict(tally.replies)}; "
        f"memory +{grown / 2**20:.1f} MiB"
    )
    assert tally.frames >= EXAMPLES * BATCH * MULTIPLIER * 0.95
    assert tally.replies["ack"] and tally.replies["invalid"]
    assert set(tally.closes) == CLOSES_EXPECTED
