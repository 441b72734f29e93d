"""Each stream event reaches a client once and in seq order, whatever the live stream does.

The live stream of a process can run behind the database (broker lag, the
sequencer holding events for a gap, a catch-up after a broker outage). These
tests make it lag on purpose: ``Lag`` stands between the process's sequencer
and its hub and keeps live events until it is released, or loses some.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from hubbub.broker.base import Delivery
from hubbub.config import Limits
from hubbub.errors import Unavailable
from tests.conftest import InProcess, serve_in_process
from tests.support import Client, auth


class Lag:
    def __init__(self, ip: InProcess, lose: tuple[int, ...] = ()) -> None:
        self.sequencer = ip.app.gateway.sequencer
        self.deliver = self.sequencer._deliver
        self.lose = set(lose)
        self.waiting: list[Delivery] = []
        self.sequencer._deliver = self._take
        self.passing = False

    def _take(self, delivery: Delivery) -> None:
        if delivery.seq in self.lose:
            return
        if self.passing:
            self.deliver(delivery)
        else:
            self.waiting.append(delivery)

    def release(self) -> None:
        """Hand on what waited, late, and let later events through."""
        self.passing = True
        waiting, self.waiting = self.waiting, []
        for delivery in waiting:
            self.deliver(delivery)


async def group(ip: InProcess, owner: str, *members: str) -> str:
    async with httpx.AsyncClient(base_url=ip.url) as http:
        r = await http.post(
            "/api/v1/conversations",
            headers=auth(owner),
            json={"kind": "group", "title": "g", "members": list(members)},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["conversation"]["id"])


async def connect(ip: InProcess, user: str) -> Client:
    client = await Client.connect_url(ip.ws_url, user)
    await client.request({"type": "ping"})  # live delivery starts now
    return client


async def chatting(ip: InProcess, a: str, b: str, count: int) -> tuple[str, Client, Client, int]:
    """A group of two, both connected; ``a`` sent ``count`` messages, ``b`` received them."""
    cid = await group(ip, a, b)
    alice = await connect(ip, a)
    bob = await connect(ip, b)
    cursor = (await send(alice, cid, count))[-1]
    assert stream_seqs(await bob.frames_within(0.3), cid)[-1] == cursor
    return cid, alice, bob, cursor


async def send(client: Client, cid: str, count: int) -> list[int]:
    return [(await client.send_message(cid, f"m{i}"))["seq"] for i in range(count)]


def stream_seqs(frames: list[dict[str, Any]], cid: str) -> list[int]:
    return [
        f["seq"]
        for f in frames
        if f.get("conversation_id") == cid and "seq" in f and f["type"] != "receipt"
    ]


async def resume(client: Client, cid: str, cursor: int) -> tuple[dict[str, Any], list[int]]:
    """Send ``resume``; return its report and the stream seqs that came before the ack."""
    await client.send({"type": "resume", "id": "r", "cursors": {cid: cursor}})
    frames = []
    while (frame := await client.recv()).get("id") != "r":
        frames.append(frame)
    return frame["conversations"][cid], stream_seqs(frames, cid)


async def test_live_events_already_replayed_are_not_delivered_again(in_process: InProcess) -> None:
    cid, alice, bob, cursor = await chatting(in_process, "ea", "eb", 3)
    await bob.close()

    lag = Lag(in_process)  # the live stream now runs behind the database
    sent = await send(alice, cid, 5)
    bob = await Client.connect_url(in_process.ws_url, "eb")
    report, replayed = await resume(bob, cid, cursor)
    assert report["status"] == "ok" and report["last_seq"] == sent[-1]
    assert replayed == sent
    lag.release()  # the lagging copies of the replayed events arrive now
    later = await send(alice, cid, 1)
    live = stream_seqs(await bob.frames_within(0.5), cid)
    assert live == later, "a replayed event was delivered again, or one was lost"


async def test_nothing_up_to_too_far_behind_arrives_live(tmp_path: Path) -> None:
    async with serve_in_process(tmp_path, limits=Limits(resume_limit=3)) as ip:
        cid = await group(ip, "fa", "fb")
        alice = await connect(ip, "fa")
        lag = Lag(ip)
        sent = await send(alice, cid, 5)
        bob = await Client.connect_url(ip.ws_url, "fb")
        report, replayed = await resume(bob, cid, 0)
        assert report["status"] == "too_far_behind" and report["last_seq"] == sent[-1]
        assert replayed == []
        lag.release()
        later = await send(alice, cid, 2)
        live = stream_seqs(await bob.frames_within(0.5), cid)
        assert live == later, "events the client was told to page arrived live as well"


async def test_a_resync_and_its_resume_bring_each_event_once(in_process: InProcess) -> None:
    cid, alice, bob, cursor = await chatting(in_process, "ga", "gb", 2)

    lag = Lag(in_process)
    sent = await send(alice, cid, 3)
    in_process.app.gateway.resync()  # as after a broker outage
    assert (await bob.recv_type("resync"))["type"] == "resync"
    report, replayed = await resume(bob, cid, cursor)
    assert report["status"] == "ok" and replayed == sent
    lag.release()
    later = await send(alice, cid, 1)
    assert stream_seqs(await bob.frames_within(0.5), cid) == later


async def test_a_live_event_lost_on_the_way_is_filled_in_before_the_next(
    in_process: InProcess,
) -> None:
    cid, alice, bob, cursor = await chatting(in_process, "ha", "hb", 2)

    lag = Lag(in_process, lose=(cursor + 1, cursor + 3))
    lag.release()
    sent = await send(alice, cid, 4)
    assert sent == [cursor + 1, cursor + 2, cursor + 3, cursor + 4]
    # The client never sees the holes: the session reads them from the database.
    assert stream_seqs(await bob.frames_within(0.5), cid) == sent


async def test_a_replay_below_what_was_handed_brings_only_the_missing(
    in_process: InProcess,
) -> None:
    cid = await group(in_process, "ia", "ib")
    alice = await connect(in_process, "ia")
    first = await send(alice, cid, 4)
    bob = await connect(in_process, "ib")  # knows nothing of the conversation yet
    later = await send(alice, cid, 2)
    assert stream_seqs(await bob.frames_within(0.3), cid) == later
    # The client had seen up to first[1] elsewhere and asks for the rest.
    report, replayed = await resume(bob, cid, first[1])
    assert report["status"] == "ok" and report["last_seq"] == later[-1]
    assert replayed == first[2:], "what this connection was handed came again"
    again = await send(alice, cid, 1)
    assert stream_seqs(await bob.frames_within(0.3), cid) == again


async def test_a_gap_the_database_cannot_fill_closes_the_connection(
    in_process: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, alice, bob, cursor = await chatting(in_process, "ja", "jb", 1)

    async def unreadable(*_: object) -> list[object]:
        raise Unavailable("database unavailable")

    monkeypatch.setattr(in_process.app.chat, "events_after", unreadable)
    Lag(in_process, lose=(cursor + 1,)).release()
    await send(alice, cid, 2)
    frames = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frames.append(await bob.recv())
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert stream_seqs(frames, cid) == [], "an event past the hole was handed on"


async def members(ip: InProcess, owner: str, cid: str, method: str, user: str) -> None:
    async with httpx.AsyncClient(base_url=ip.url, headers=auth(owner)) as http:
        if method == "remove":
            r = await http.delete(f"/api/v1/conversations/{cid}/members/{user}")
        else:
            r = await http.post(f"/api/v1/conversations/{cid}/members", json={"members": [user]})
        assert r.status_code == 200, r.text


async def test_a_member_added_again_gets_nothing_from_while_it_was_out(
    in_process: InProcess,
) -> None:
    cid = await group(in_process, "ka", "kb")
    alice = await connect(in_process, "ka")
    bob = await connect(in_process, "kb")
    before = await send(alice, cid, 1)
    await members(in_process, "ka", cid, "remove", "kb")
    out = await send(alice, cid, 2)  # not for bob
    await members(in_process, "ka", cid, "add", "kb")
    back = await send(alice, cid, 1)
    frames = [f for f in await bob.frames_within(0.5) if f.get("conversation_id") == cid]
    got = [(f["type"], f["seq"]) for f in frames if "seq" in f and f["type"] != "receipt"]
    left_seq, joined_seq = before[0] + 1, out[-1] + 1
    # The join jumps over what bob missed while out: no gap fill hands it on.
    assert got == [
        ("message.new", before[0]),
        ("member.left", left_seq),
        ("member.joined", joined_seq),
        ("message.new", back[0]),
    ]
    # A resume from before the removal skips the same stretch.
    fresh = await Client.connect_url(in_process.ws_url, "kb")
    report, replayed = await resume(fresh, cid, before[0] - 1)
    assert report["status"] == "ok"
    assert replayed == [before[0], left_seq, joined_seq, back[0]]


async def test_a_failed_resume_still_counts_the_cursors(
    in_process: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = await group(in_process, "la", "lb")
    alice = await connect(in_process, "la")
    cursor = (await send(alice, cid, 1))[-1]
    missed = await send(alice, cid, 3)  # bob is offline
    bob = await Client.connect_url(in_process.ws_url, "lb")
    replay = in_process.app.chat.replay

    async def unavailable(*_: object) -> list[object]:
        raise Unavailable("database unavailable")

    monkeypatch.setattr(in_process.app.chat, "replay", unavailable)
    failed = await bob.request({"type": "resume", "cursors": {cid: cursor}})
    assert failed["type"] == "error" and failed["code"] == "unavailable"
    monkeypatch.setattr(in_process.app.chat, "replay", replay)
    later = await send(alice, cid, 1)
    # The live event is past what the cursor said: the gap is filled first.
    assert stream_seqs(await bob.frames_within(0.5), cid) == [*missed, *later]


async def test_a_resume_waiting_its_turn_when_the_window_passes_still_holds(
    tmp_path: Path,
) -> None:
    async with serve_in_process(tmp_path, limits=Limits(resume_window=0.3)) as ip:
        cid = await group(ip, "ma", "mb")
        alice = await connect(ip, "ma")
        earlier = await send(alice, cid, 2)
        bob = await Client.connect_url(ip.ws_url, "mb")
        meanwhile = await send(alice, cid, 2)  # held for bob: he has not resumed yet
        await bob.send({"type": "resume", "id": "r", "cursors": {cid: 0}})
        # The whole loop stalls past the window with the resume still unread,
        # as a busy server does: the resume is queued before the window's end
        # is handled, and decides.
        time.sleep(0.5)
        frames = []
        while (frame := await bob.recv()).get("id") != "r":
            frames.append(frame)
        frames += await bob.frames_within(0.3)
        assert stream_seqs(frames, cid) == earlier + meanwhile
