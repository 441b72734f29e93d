"""Push notifications across three processes on one PostgreSQL database and one Redis.

Every process runs a push worker on the same outbox; leases (SKIP LOCKED) are
to make each push go out once. Each process is pointed at an Expo stand-in of
its own (tests/pushstub.py), so a push tells which process sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import pushstub
from tests.pushstub import Stub, expo_token, register, send
from tests.scaleout.conftest import Cluster
from tests.services import REDIS_URL, fresh_postgres_sync, need
from tests.support import Client, ServerProcess, create_group, open_direct

WINDOW = 0.3
GRACE = 0.2
"""The presence grace the Cluster sets."""
OUTBOX = ("push_events", "push_outbox", "push_sends")

Start = Callable[..., Cluster]


def push_env(**extra: str) -> dict[str, str]:
    return {
        "HUBBUB_PUSH_WINDOW": str(WINDOW),
        "HUBBUB_PUSH_POLL": "0.05",
        "HUBBUB_PUSH_RETRY_BASE": "0.2",
        "HUBBUB_PUSH_RETRY_MAX": "1",
        **extra,
    }


@pytest.fixture
def expos() -> Iterator[list[Stub]]:
    """One Expo stand-in per process."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(pushstub.expo()) for _ in range(3)]


@pytest.fixture
def start_cluster(tmp_path: Path, expos: list[Stub]) -> Iterator[Start]:
    """Start three processes (extra env as keywords), node i sending to ``expos[i]``."""
    need(REDIS_URL, 6379, "Redis")
    started: list[Cluster] = []
    with fresh_postgres_sync() as database_url:

        def start(**extra: str) -> Cluster:
            made = Cluster(tmp_path, database_url, REDIS_URL, 3, **push_env(**extra))
            for node, stub in zip(made.nodes, expos, strict=True):
                node.env["HUBBUB_EXPO_PUSH_URL"] = stub.url + pushstub.SEND_PATH
            started.append(made.start())
            return made

        try:
            yield start
        finally:
            for made in started:
                made.stop()


def database_url(cluster: Cluster) -> str:
    return cluster.nodes[0].env["HUBBUB_DATABASE_URL"]


async def outbox_rows(url: str) -> int:
    """Rows still waiting in the outbox's three steps."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return sum([int(await conn.fetchval(f"SELECT COUNT(*) FROM {t}")) for t in OUTBOX])
    finally:
        await conn.close()


def delivered(expos: list[Stub]) -> list[tuple[int, dict[str, Any]]]:
    """(index of the process that sent it, Expo message) of every push accepted."""
    found = []
    for i, stub in enumerate(expos):
        with stub.lock:
            found += [(i, m) for m in stub.delivered]
    return found


async def drained(cluster: Cluster, expos: list[Stub], timeout: float = 30) -> None:
    """Wait until the outbox is empty (everything handed over), then a little more."""
    url = database_url(cluster)
    deadline = time.monotonic() + timeout
    while (rows := await outbox_rows(url)) > 0:
        assert time.monotonic() < deadline, f"{rows} outbox rows left after {timeout}s"
        await asyncio.sleep(0.1)
    before = len(delivered(expos))
    await asyncio.sleep(0.5)
    assert await outbox_rows(url) == 0
    assert len(delivered(expos)) == before, "pushes arrived after the outbox was empty"


def device(server: ServerProcess, user: str) -> str:
    """Register an Expo device of ``user``'s; its token."""
    token = expo_token(user)
    register(server, user, token)
    return token


def no_tracebacks(nodes: list[ServerProcess]) -> None:
    for node in nodes:
        text = node.log.read_text() if node.log.exists() else ""
        assert "Traceback" not in text and "ERROR" not in text, f"{node.log}:\n{text[-4000:]}"


def check_exactly_once(
    pushes: list[tuple[int, dict[str, Any]]], owner: dict[str, str], plan: Plan
) -> None:
    """No push twice; per recipient and conversation every message told of once.

    A push tells of the messages after the previous push's up to its own
    ``seq``: its ``count`` is how many of those others sent.
    """
    ids = Counter(m["data"]["push_id"] for _, m in pushes)
    twice = {pid: n for pid, n in ids.items() if n > 1}
    assert not twice, f"pushes delivered more than once: {twice}"
    told: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for _, m in pushes:
        key = (owner[m["to"]], m["data"]["conversation_id"])
        told.setdefault(key, []).append((m["data"]["seq"], m["data"]["count"]))
    problems = []
    for key, seqs in plan.seqs.items():
        got = sorted(told.get(key, []))
        covered, previous = [], 0
        for seq, count in got:
            covered.append(len([s for s in seqs if previous < s <= seq]) == count)
            previous = seq
        if (
            sum(count for _, count in got) != len(seqs)
            or not all(covered)
            or (seqs and got[-1][0] != seqs[-1])
        ):
            problems.append(f"{key}: messages at {seqs}, pushes (seq, count) {got}")
    assert set(told) <= set(plan.seqs), "a push to someone who was owed none"
    assert not problems, "messages not told of exactly once:\n" + "\n".join(problems)


class Plan:
    """Conversations, who sends in them, and what each recipient is owed.

    Recipients (with a device) never send: a member's own message marks the
    conversation read up to it, so messages before it not yet pushed never are.
    Senders have no device.
    """

    def __init__(self, cluster: Cluster, layout: list[list[str]], senders: set[str]) -> None:
        self.members: dict[str, list[str]] = {}
        self.senders: dict[str, list[str]] = {}
        self.seqs: dict[tuple[str, str], list[int]] = {}
        """(recipient, conversation) -> the seqs of the messages others sent there."""
        for i, members in enumerate(layout):
            node = cluster.nodes[i % 3]
            if len(members) == 2:
                cid = open_direct(node, members[0], members[1])
            else:
                cid = create_group(node, members[0], members[1:], title=f"g{i}")
            self.members[cid] = members
            self.senders[cid] = [u for u in members if u in senders]
            for user in members:
                if user not in senders:
                    self.seqs[(user, cid)] = []

    def sent(self, cid: str, sender: str, message: dict[str, Any]) -> None:
        for user in self.members[cid]:
            if (user, cid) in self.seqs:
                self.seqs[(user, cid)].append(message["seq"])

    def total(self) -> int:
        return sum(len(seqs) for seqs in self.seqs.values())


async def send_spread(
    cluster: Cluster, plan: Plan, count: int, seed: int, pauses: list[float]
) -> None:
    """``count`` messages, each from a random sender of a random conversation, on node i % 3."""
    rng = random.Random(seed)
    cids = sorted(plan.members)
    for i in range(count):
        cid = rng.choice(cids)
        sender = rng.choice(plan.senders[cid])
        node = cluster.nodes[i % 3]
        message = await asyncio.to_thread(send, node, sender, cid, f"message {i}")
        plan.sent(cid, sender, message)
        await asyncio.sleep(rng.choice(pauses))


async def test_every_push_is_sent_once_whichever_process_sends_it(
    start_cluster: Start, expos: list[Stub]
) -> None:
    cluster = start_cluster()
    nodes = cluster.nodes
    users = [f"u{i}" for i in range(6)]
    owner = {device(nodes[i % 3], user): user for i, user in enumerate(users)}
    layout = [
        ["s0", "u0"],
        ["s1", "u1"],
        ["s2", "u5"],
        ["s0", "s1", *users],
        ["s2", "u1", "u2", "u3"],
        ["s0", "s2", "u3", "u4", "u5", "u0"],
    ]
    plan = Plan(cluster, layout, {"s0", "s1", "s2"})
    await send_spread(cluster, plan, 60, seed=7, pauses=[0.01, 0.03, 0.03, WINDOW * 1.2])
    await drained(cluster, expos)
    pushes = delivered(expos)
    check_exactly_once(pushes, owner, plan)
    assert len(pushes) < plan.total(), "no burst collapsed into one push"
    senders = Counter(i for i, _ in pushes)
    print(f"{len(pushes)} pushes for {plan.total()} messages to recipients, by process {senders}")
    assert len(senders) >= 2, f"every push went out from one process: {senders}"
    no_tracebacks(nodes)


async def test_online_on_one_process_is_not_pushed_for_a_send_on_another(
    start_cluster: Start, expos: list[Stub]
) -> None:
    cluster = start_cluster()
    nodes = cluster.nodes
    group = create_group(nodes[0], "ann", ["bob", "cat"], title="Team")
    direct = open_direct(nodes[2], "ann", "bob")
    bob_token, cat_token = device(nodes[2], "bob"), device(nodes[0], "cat")
    bob = await Client.connect_url(nodes[1].ws_url, "bob")
    await asyncio.sleep(0.3)  # bob's presence reaches Redis
    first = await asyncio.to_thread(send, nodes[0], "ann", group, "who is here?")
    second = await asyncio.to_thread(send, nodes[0], "ann", direct, "just you and me")
    live = {(await bob.recv_type("message.new"))["message"]["id"] for _ in range(2)}
    assert live == {first["id"], second["id"]}
    await drained(cluster, expos)  # bob's rows were looked at again after the grace
    pushes = delivered(expos)
    assert [m for _, m in pushes if m["to"] == bob_token] == []
    cat = [m for _, m in pushes if m["to"] == cat_token]
    assert [(m["data"]["message_id"], m["data"]["count"]) for m in cat] == [(first["id"], 1)]
    assert cat[0]["title"] == "ann in Team"

    # Once bob has left node 1, a send on node 2 reaches him as a push.
    await bob.close()
    third = await asyncio.to_thread(send, nodes[2], "ann", direct, "gone already?")
    await drained(cluster, expos)
    pushes = delivered(expos)
    told = [m["data"]["message_id"] for _, m in pushes if m["to"] == bob_token]
    assert told == [third["id"]]
    no_tracebacks(nodes)


class SlowFailures:
    """Make a stub's scripted failures take ``delay`` seconds, and tell when one is under way."""

    def __init__(self, stub: Stub, delay: float, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stub = stub
        self.delay = delay
        self.busy = threading.Event()
        self._take = stub.take_failure
        monkeypatch.setattr(stub, "take_failure", self.take)

    def take(self) -> tuple[int, dict[str, str]] | None:
        with self.stub.lock:
            pending = bool(self.stub.failures)
        if not pending:
            return self._take()
        self.busy.set()
        try:
            time.sleep(self.delay)
            return self._take()
        finally:
            self.busy.clear()


async def test_a_process_killed_with_pushes_pending_leaves_them_to_the_others(
    start_cluster: Start, expos: list[Stub], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = start_cluster(HUBBUB_PUSH_LEASE="2")  # a request may take 2/3 s: the stub 0.4
    nodes = cluster.nodes
    users = [f"k{i}" for i in range(4)]
    owner = {device(nodes[i % 3], user): user for i, user in enumerate(users)}
    layout = [["t0", "k0"], ["t1", "k1"], ["t0", "t1", *users], ["t1", "k2", "k3"]]
    plan = Plan(cluster, layout, {"t0", "t1"})
    gates = [SlowFailures(stub, 0.4, monkeypatch) for stub in expos]
    for stub in expos:
        stub.fail(1000, 503)  # nothing gets through: every push stays in the outbox
    await send_spread(cluster, plan, 15, seed=11, pauses=[WINDOW * 1.2])

    # Kill a process in the middle of handing pushes to Expo: it holds their leases.
    deadline = time.monotonic() + 10
    while not any(g.busy.is_set() for g in gates):
        assert time.monotonic() < deadline, "no process tried to send"
        await asyncio.sleep(0.005)
    victim = next(i for i, g in enumerate(gates) if g.busy.is_set())
    with expos[victim].lock:
        answered = len(expos[victim].requests)
    nodes[victim].kill()
    deadline = time.monotonic() + 5
    while True:  # the stub answers the dead connection, and records what it was sent
        with expos[victim].lock:
            if len(expos[victim].requests) > answered:
                request = expos[victim].requests[answered]
                break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert request["status"] == 503, request
    held = {m["data"]["push_id"] for m in request["body"]}
    assert held
    for stub in expos:
        with stub.lock:
            stub.failures.clear()

    survivors = [n for i, n in enumerate(nodes) if i != victim]
    await drained(cluster, expos)
    pushes = delivered(expos)
    assert {i for i, _ in pushes} <= {i for i in range(3) if i != victim}
    check_exactly_once(pushes, owner, plan)
    ids = Counter(m["data"]["push_id"] for _, m in pushes)
    assert all(ids[pid] == 1 for pid in held), (held, ids)
    print(f"process {victim} killed holding {len(held)} of {len(pushes)} pushes")
    no_tracebacks(survivors)


def slow_stub(stub: Stub, delay: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer of ``stub`` takes ``delay`` seconds."""
    take = stub.take_failure

    def slowly() -> tuple[int, dict[str, str]] | None:
        time.sleep(delay)
        return take()

    monkeypatch.setattr(stub, "take_failure", slowly)


async def test_a_pass_longer_than_the_lease_sends_nothing_twice(
    start_cluster: Start, expos: list[Stub], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nine batches of 0.6 s each in one pass, against a lease of 4.5 s.

    Each batch renews its pushes' lease before the call, and a call may last
    a third of a lease (1.5 s: room for a loaded machine; a call that timed
    out would be sent again, as any push whose answer never came), so the
    other processes never take pushes under way.
    """
    cluster = start_cluster(HUBBUB_PUSH_LEASE="4.5")
    nodes = cluster.nodes
    for stub in expos:
        slow_stub(stub, 0.6, monkeypatch)
    apps = [f"com.example.app{i}" for i in range(9)]
    for app in apps:  # one batch per app: nine requests in a row
        register(nodes[0], "bob", expo_token(app), app_id=app)
    direct = open_direct(nodes[0], "ann", "bob")
    sent = [await asyncio.to_thread(send, nodes[i % 3], "ann", direct, f"m{i}") for i in range(3)]
    await drained(cluster, expos, timeout=40)
    pushes = delivered(expos)
    ids = Counter(m["data"]["push_id"] for _, m in pushes)
    assert all(n == 1 for n in ids.values()), ids
    by_app: dict[str, int] = {}
    for _, m in pushes:
        app = next(a for a in apps if a in m["to"])
        by_app[app] = by_app.get(app, 0) + m["data"]["count"]
    assert by_app == {app: len(sent) for app in apps}
    no_tracebacks(nodes)
