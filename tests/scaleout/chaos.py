"""A chaos run: clients that follow docs/protocol.md, three processes, faults at random.

Three hubbub processes share a private PostgreSQL and a private Redis. Members
of groups (each member in two, so queued sends form batches that span
conversations) send and read as docs/protocol.md tells a client to:

- one cursor per conversation, up to which everything was shown in order;
  ``resume`` with every cursor after each (re)connect and on ``resync``; a
  live event past a gap (which protocol.md allows only for a conversation's
  first live event when the resume came too late) waits while a ``resume``
  from the cursor fetches the gap;
- ``too_far_behind``: page the conversation over REST up to ``last_seq``
  (live events of it wait meanwhile), then ``resume`` from there;
- every send carries a ``client_msg_id`` and is retried with it, on
  ``unavailable`` and after a reconnect, until it is acked;
- reconnect after any drop, with jittered backoff, to any live process.

They do **not** drop duplicates: every stream event they receive is recorded
as it comes. Faults strike one at a time, in a shuffled rotation: SIGKILL of
a process (started again), Redis killed (started again), PostgreSQL stopped
with ``-m immediate`` or ``-m fast`` (started again), client connections cut
(their clients offline for up to 3 s, sending meanwhile).

At the end every message must be in the database once with gap-free seqs per
conversation, and every member must have received every message of its
conversations exactly once, in seq order, with no command left unanswered on
an open connection. ``run_chaos`` returns a report; ``report.problems`` lists
what broke.

Used by tests/scaleout/test_chaos.py (a short run) and bench/chaos.py (long
runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import tempfile
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import websockets

from tests.scaleout.conftest import Cluster, PrivatePostgres, PrivateRedis
from tests.support import ServerProcess, create_group, token

FAULTS = ("kill_process", "redis", "postgres", "cut_connections")
REPLY_TIMEOUT = 15.0  # a command with no reply for this long on an open connection is lost


@dataclass
class Config:
    duration: float = 60.0
    """Seconds of traffic while faults strike."""
    users: int = 12
    groups: int = 4
    burst: int = 3
    """Messages a member sends at once (to its conversations, in random order)."""
    burst_every: float = 0.25
    window: int = 24
    """Sends a member keeps unacked at most."""
    calm: tuple[float, float] = (2.0, 4.0)
    """Seconds between two faults."""
    resume_limit: int = 20
    """Small, so that clients cut off for a second or two page over REST."""
    max_messages: int | None = None
    """Stop sending once this many messages were created (the duration still bounds the run)."""
    seed: int = 1
    root: Path | None = None
    log: Any = None
    """Called with progress lines (print, for instance)."""


@dataclass
class Report:
    config: Config
    created: int = 0
    acked: int = 0
    traffic_seconds: float = 0.0
    stats: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    latency_calm_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def acked_per_second(self) -> float:
        return self.acked / self.traffic_seconds if self.traffic_seconds else 0.0

    def percentile(self, q: float) -> float | None:
        data = sorted(self.latency_calm_ms)
        if not data:
            return None
        return data[min(len(data) - 1, int(q * len(data)))]

    def summary(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "acked": self.acked,
            "traffic_seconds": round(self.traffic_seconds, 1),
            "acked_per_second": round(self.acked_per_second, 1),
            "delivery_calm_p50_ms": _round(self.percentile(0.50)),
            "delivery_calm_p99_ms": _round(self.percentile(0.99)),
            "calm_samples": len(self.latency_calm_ms),
            "faults": dict(self.faults),
            "stats": dict(self.stats),
            "problems": self.problems,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class Rig:
    """The servers of one run: private PostgreSQL and Redis, three hubbub processes."""

    def __init__(self, root: Path, config: Config) -> None:
        self.root = root
        self.postgres = PrivatePostgres()
        self.postgres.start()
        self.redis = PrivateRedis(root / "redis")
        self.redis.start()
        self.cluster = Cluster(
            root,
            self.postgres.url,
            self.redis.url,
            3,
            HUBBUB_RESUME_LIMIT=str(config.resume_limit),
        ).start()
        self.alive = [True] * len(self.nodes)

    @property
    def nodes(self) -> list[ServerProcess]:
        return self.cluster.nodes

    def close(self) -> None:
        self.cluster.stop()
        self.redis.stop()
        self.postgres.destroy()


class Member:
    """One user with one connection at a time, behaving as protocol.md says."""

    def __init__(self, run: ChaosRun, user: str, cids: list[str], seed: int) -> None:
        self.run = run
        self.user = user
        self.cids = cids
        self.rng = random.Random(seed)
        self.token = token(user, ttl=86_400)
        self.cursor = dict.fromkeys(cids, 0)  # everything up to here was shown, in order
        self.ahead: dict[str, dict[int, Any]] = {c: {} for c in cids}  # past a gap, waiting
        self.seqs: dict[str, list[int]] = {c: [] for c in cids}  # every stream seq, as received
        self.messages: dict[str, list[str]] = {c: [] for c in cids}  # every message id, as received
        self.outbox: OrderedDict[str, tuple[str, str]] = OrderedDict()  # key -> (cid, body)
        self.acked: dict[str, str] = {}  # client_msg_id -> message id
        self.ws: Any = None
        self.node: ServerProcess | None = None
        self._frame_id = 0
        self._inflight: dict[int, tuple[str, float]] = {}  # frame id -> (key, sent at)
        self._resumes: dict[str, list[str]] = {}
        self._paging: dict[str, list[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._made = 0
        self._offline_until = 0.0
        self.done = False

    # Connection -------------------------------------------------------------

    async def connect_forever(self) -> None:
        stats = self.run.stats
        while not self.done:
            if time.monotonic() < self._offline_until:
                await asyncio.sleep(self._offline_until - time.monotonic())
            node = self.run.pick_node(self.rng)
            if node is None:
                await asyncio.sleep(0.1)
                continue
            try:
                async with websockets.connect(
                    f"{node.ws_url}?token={self.token}",
                    open_timeout=5,
                    close_timeout=1,
                    max_queue=None,
                    ping_interval=5,
                    ping_timeout=10,
                ) as ws:
                    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    assert hello["type"] == "hello", hello
                    self.ws, self.node = ws, node
                    stats["connections"] += 1
                    await self.resume(self.cids)
                    for key in list(self.outbox):
                        await self.transmit(key)
                    async for raw in ws:
                        await self.handle(json.loads(raw))
            except (OSError, TimeoutError, websockets.WebSocketException):
                pass
            finally:
                self.ws = None
                self._inflight.clear()
                self._resumes.clear()
                for task in list(self._tasks):
                    task.cancel()
                self._paging.clear()
            if not self.done:
                stats["reconnects"] += 1
                await asyncio.sleep(self.rng.uniform(0.05, 0.5))

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, frame: dict[str, Any]) -> None:
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(websockets.WebSocketException, OSError):
                await ws.send(json.dumps(frame))

    def cut(self, offline: float) -> None:
        """Lose the network for ``offline`` seconds: the connection drops, no close handshake."""
        self._offline_until = time.monotonic() + offline
        if self.ws is not None:
            self.ws.transport.abort()

    # Sending ----------------------------------------------------------------

    async def produce(self) -> None:
        cfg = self.run.config
        while self.run.sending:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * cfg.burst_every)
            for _ in range(cfg.burst):
                if len(self.outbox) >= cfg.window or not self.run.may_create():
                    break
                self._made += 1
                key = f"{self.user}-{self._made}"
                self.outbox[key] = (self.rng.choice(self.cids), f"{time.time():.6f}")
                await self.transmit(key)

    async def transmit(self, key: str) -> None:
        if self.ws is None or key not in self.outbox:
            return  # sent again on the next connection
        cid, body = self.outbox[key]
        self._frame_id += 1
        self._inflight[self._frame_id] = (key, time.monotonic())
        frame = {
            "type": "message.send",
            "id": self._frame_id,
            "conversation_id": cid,
            "body": body,
            "client_msg_id": key,
        }
        await self._send(frame)

    async def retransmit_later(self, key: str) -> None:
        await asyncio.sleep(self.rng.uniform(0.2, 0.6))
        await self.transmit(key)

    def replied(self, frame: dict[str, Any]) -> None:
        key, _ = self._inflight.pop(frame["id"])
        stats = self.run.stats
        if frame["type"] == "ack":
            self.acked[key] = frame["message"]["id"]
            self.outbox.pop(key, None)
            stats["acks"] += 1
            if frame["duplicate"]:
                stats["acks_duplicate"] += 1
            return
        stats[f"send_error_{frame['code']}"] += 1
        self.spawn(self.retransmit_later(key))

    def check_unanswered(self) -> None:
        now = time.monotonic()
        for fid, (key, sent_at) in list(self._inflight.items()):
            if now - sent_at > REPLY_TIMEOUT:
                del self._inflight[fid]
                self.run.stats["unanswered"] += 1
                self.spawn(self.transmit(key))

    # Receiving --------------------------------------------------------------

    async def resume(self, cids: list[str]) -> None:
        cids = [c for c in cids if c not in self._paging]
        if not cids:
            return
        self._frame_id += 1
        rid = f"r{self._frame_id}"
        self._resumes[rid] = cids
        self.run.stats["resumes"] += 1
        await self._send(
            {"type": "resume", "id": rid, "cursors": {c: self.cursor[c] for c in cids}}
        )

    async def resume_later(self, cids: list[str]) -> None:
        await asyncio.sleep(self.rng.uniform(0.2, 0.6))
        await self.resume(cids)

    async def handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        fid = frame.get("id")
        if kind in ("ack", "error") and fid in self._inflight:
            self.replied(frame)
        elif kind in ("ack", "error") and fid in self._resumes:
            cids = self._resumes.pop(fid)
            if kind == "error":
                self.run.stats[f"resume_error_{frame['code']}"] += 1
                self.spawn(self.resume_later(cids))
            else:
                self.resumed(frame["conversations"])
        elif kind in ("ack", "error"):
            self.run.stats["stray_replies"] += 1  # answered twice, or to nothing sent
        elif kind == "resync":
            self.run.stats["resyncs"] += 1
            await self.resume(self.cids)
        elif "seq" in frame and frame.get("conversation_id") in self.cursor and kind != "receipt":
            cid = frame["conversation_id"]
            if cid in self._paging:
                self._paging[cid].append(frame)
            else:
                self.take(cid, frame["seq"], frame.get("message"), live=not self._resumes)

    def take(self, cid: str, seq: int, message: dict[str, Any] | None, live: bool) -> None:
        """A stream event from the server (live or replayed)."""
        stats = self.run.stats
        if seq <= self.cursor[cid] or seq in self.ahead[cid]:
            stats["duplicates"] += 1  # the server sent it twice
        elif seq == self.cursor[cid] + 1:
            self.hand(cid, seq, message, live)
            self.drain(cid)
        else:
            # Past a gap: keep it until the gap is filled, and ask for the
            # gap (protocol.md: a conversation's first live event after the
            # resume window, or one the client did not name, starts anywhere).
            stats["out_of_order"] += 1
            self.ahead[cid][seq] = message
            if not any(cid in cids for cids in self._resumes.values()):
                self.spawn(self.resume([cid]))

    def paged(self, cid: str, message: dict[str, Any]) -> None:
        """A message read over REST (seqs of other events are skipped there)."""
        seq = message["seq"]
        if seq <= self.cursor[cid]:
            return
        self.ahead[cid].pop(seq, None)  # the page's copy stands for the live one
        self.hand(cid, seq, message, live=False)
        self.drain(cid)

    def hand(self, cid: str, seq: int, message: dict[str, Any] | None, live: bool) -> None:
        """What the app is shown: each conversation's events in seq order."""
        self.cursor[cid] = seq
        self.seqs[cid].append(seq)
        for stale in [s for s in self.ahead[cid] if s <= seq]:
            del self.ahead[cid][stale]
        if message is not None:
            self.messages[cid].append(message["id"])
            if live:
                self.run.latency(float(message["body"]))

    def drain(self, cid: str) -> None:
        ahead = self.ahead[cid]
        while self.cursor[cid] + 1 in ahead:
            seq = self.cursor[cid] + 1
            self.hand(cid, seq, ahead.pop(seq), live=False)

    def resumed(self, report: dict[str, dict[str, Any]]) -> None:
        for cid, entry in report.items():
            status = entry["status"]
            self.run.stats[f"resume_{status}"] += 1
            if status == "ok" and self.cursor[cid] < entry["last_seq"]:
                self.run.stats["replay_short"] += 1  # it said ok, yet events are missing
            elif status == "too_far_behind":
                self._paging[cid] = []
                self.spawn(self.page(cid, entry["last_seq"]))

    async def page(self, cid: str, last_seq: int) -> None:
        """Read the conversation over REST up to ``last_seq``, then resume from there."""
        node, ws = self.node, self.ws
        assert node is not None
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=node.url, timeout=5, headers=headers) as http:
            while self.cursor[cid] < last_seq and self.ws is ws:
                try:
                    r = await http.get(
                        f"/api/v1/conversations/{cid}/messages",
                        params={"after": self.cursor[cid], "limit": 100},
                    )
                except httpx.HTTPError:
                    r = None
                if r is None or r.status_code != 200:
                    await asyncio.sleep(0.3)
                    continue
                self.run.stats["pages"] += 1
                found = [m for m in r.json()["messages"] if m["seq"] <= last_seq]
                for m in found:
                    self.paged(cid, m)
                if not found:  # only events that are not messages up to last_seq
                    self.hand(cid, last_seq, None, live=False)
                    self.drain(cid)
        waiting = self._paging.pop(cid, [])
        for frame in waiting:
            self.take(cid, frame["seq"], frame.get("message"), live=False)
        await self.resume([cid])


class ChaosRun:
    def __init__(self, config: Config, rig: Rig) -> None:
        self.config = config
        self.rig = rig
        self.rng = random.Random(config.seed)
        self.stats: Counter[str] = Counter()
        self.faults: list[tuple[str, float, float]] = []
        self.samples: list[tuple[float, float]] = []  # (sent at, latency ms)
        self.sending = True
        self.created = 0
        self.members: list[Member] = []

    def say(self, line: str) -> None:
        if self.config.log is not None:
            self.config.log(f"[chaos] {line}")

    def pick_node(self, rng: random.Random) -> ServerProcess | None:
        up = [n for n, alive in zip(self.rig.nodes, self.rig.alive, strict=True) if alive]
        return rng.choice(up) if up else None

    def may_create(self) -> bool:
        limit = self.config.max_messages
        if limit is not None and self.created >= limit:
            return False
        self.created += 1
        return True

    def latency(self, sent_at: float) -> None:
        self.samples.append((sent_at, (time.time() - sent_at) * 1000))

    async def inject(self, until: float) -> None:
        kinds: list[str] = []
        while time.monotonic() < until and self.sending:
            await asyncio.sleep(self.rng.uniform(*self.config.calm))
            if time.monotonic() >= until or not self.sending:
                break
            if not kinds:
                kinds = list(FAULTS)
                self.rng.shuffle(kinds)
            kind = kinds.pop()
            started = time.time()
            await self.strike(kind)
            self.faults.append((kind, started, time.time()))
            self.say(f"{kind} done ({time.time() - started:.1f} s); acks {self.stats['acks']}")

    async def strike(self, kind: str) -> None:
        rig, rng = self.rig, self.rng
        if kind == "kill_process":
            i = rng.randrange(len(rig.nodes))
            rig.alive[i] = False
            await asyncio.to_thread(rig.nodes[i].kill)
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            await asyncio.to_thread(rig.nodes[i].start)
            rig.alive[i] = True
        elif kind == "redis":
            await asyncio.to_thread(rig.redis.stop)
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            await asyncio.to_thread(rig.redis.start)
        elif kind == "postgres":
            await asyncio.to_thread(rig.postgres.stop, rng.choice(["immediate", "fast"]))
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            await asyncio.to_thread(rig.postgres.start)
        else:
            for member in rng.sample(self.members, max(1, len(self.members) // 3)):
                member.cut(rng.uniform(0.0, 3.0))

    async def watchdog(self) -> None:
        while True:
            await asyncio.sleep(1)
            for member in self.members:
                member.check_unanswered()

    async def execute(self) -> Report:
        cfg = self.config
        report = Report(cfg)
        node = self.rig.nodes[0]
        users = [f"u{i}" for i in range(cfg.users)]
        groups: list[list[str]] = [[] for _ in range(cfg.groups)]
        for i, user in enumerate(users):  # each user in two groups
            groups[i % cfg.groups].append(user)
            groups[(i + 1) % cfg.groups].append(user)
        cids = [create_group(node, g[0], g[1:], f"g{n}") for n, g in enumerate(groups)]
        member_of = {u: [c for c, g in zip(cids, groups, strict=True) if u in g] for u in users}
        self.members = [
            Member(self, u, member_of[u], cfg.seed * 1000 + i) for i, u in enumerate(users)
        ]
        connections = [asyncio.create_task(m.connect_forever()) for m in self.members]
        watchdog = asyncio.create_task(self.watchdog())
        started = time.monotonic()
        producers = [asyncio.create_task(m.produce()) for m in self.members]
        until = started + cfg.duration
        faults = asyncio.create_task(self.inject(until))
        while time.monotonic() < until and not (
            cfg.max_messages is not None
            and self.created >= cfg.max_messages
            and not any(m.outbox for m in self.members)
        ):
            await asyncio.sleep(0.5)
        self.sending = False
        await faults
        await asyncio.gather(*producers)
        self.say(f"traffic over; {self.stats['acks']} acks; settling")
        try:
            await self.settle(cids)
        finally:
            report.traffic_seconds = time.monotonic() - started
            for m in self.members:
                m.done = True
                if m.ws is not None:
                    await m.ws.close()
            watchdog.cancel()
            for task in connections:
                task.cancel()
            await asyncio.gather(*connections, watchdog, return_exceptions=True)
        await self.verify(report, cids)
        return report

    async def settle(self, cids: list[str]) -> None:
        """Every send acked, then every member current on every conversation."""
        deadline = time.monotonic() + 90
        while any(m.outbox for m in self.members):
            if time.monotonic() > deadline:
                self.stats["never_acked"] = sum(len(m.outbox) for m in self.members)
                return
            await asyncio.sleep(0.2)
        last = await self.last_seqs(cids)
        for m in self.members:
            await m.resume(m.cids)
        while any(m.cursor[c] < last[c] or m.ahead[c] for m in self.members for c in m.cids):
            if time.monotonic() > deadline:
                self.stats["never_current"] = sum(
                    1 for m in self.members for c in m.cids if m.cursor[c] < last[c] or m.ahead[c]
                )
                return
            await asyncio.sleep(0.2)

    async def last_seqs(self, cids: list[str]) -> dict[str, int]:
        conn = await asyncpg.connect(self.rig.postgres.url)
        try:
            rows = await conn.fetch(
                "SELECT id, last_seq FROM conversations WHERE id = ANY($1::text[])", cids
            )
        finally:
            await conn.close()
        return {cid: seq for cid, seq in rows}

    async def verify(self, report: Report, cids: list[str]) -> None:
        problems = report.problems
        conn = await asyncpg.connect(self.rig.postgres.url)
        try:
            events = await conn.fetch(
                "SELECT conversation_id, seq FROM events ORDER BY conversation_id, seq"
            )
            messages = await conn.fetch(
                "SELECT id, conversation_id, seq, sender_id, client_msg_id FROM messages "
                "ORDER BY conversation_id, seq"
            )
        finally:
            await conn.close()
        seqs: dict[str, list[int]] = {c: [] for c in cids}
        for cid, seq in events:
            seqs[cid].append(seq)
        for cid, found in seqs.items():
            if found != list(range(1, len(found) + 1)):
                problems.append(f"{cid}: seqs in the database are not 1..{len(found)}")
        in_order: dict[str, list[str]] = {c: [] for c in cids}
        keys: Counter[tuple[str, str]] = Counter()
        stored: dict[str, str] = {}
        for mid, cid, _seq, sender, key in messages:
            in_order[cid].append(mid)
            keys[(sender, key)] += 1
            stored[key] = mid
        doubled = [k for k, n in keys.items() if n > 1]
        if doubled:
            problems.append(f"{len(doubled)} client_msg_ids stored more than once")
        made = {key for m in self.members for key in [*m.acked, *m.outbox]}
        report.created = len(made)
        report.acked = sum(len(m.acked) for m in self.members)
        missing = [k for m in self.members for k in m.acked if stored.get(k) != m.acked[k]]
        if missing:
            problems.append(f"{len(missing)} acked messages missing from the database")
        if set(stored) - made:
            problems.append(f"{len(set(stored) - made)} stored messages nobody sent")
        for m in self.members:
            for cid in m.cids:
                got, want = m.messages[cid], in_order[cid]
                if got != want:
                    counts = Counter(got)
                    twice = sum(1 for n in counts.values() if n > 1)
                    lost = len(set(want) - set(got))
                    problems.append(
                        f"{m.user} in {cid}: {len(got)} received for {len(want)} stored "
                        f"({twice} more than once, {lost} never, order differs: "
                        f"{[i for i in got if i in set(want)] != want})"
                    )
                if m.seqs[cid] != sorted(set(m.seqs[cid])):
                    problems.append(f"{m.user} in {cid}: seqs not strictly increasing")
        for name in (
            "duplicates",
            "gaps",
            "unanswered",
            "stray_replies",
            "replay_short",
            "never_acked",
            "never_current",
            "send_error_internal",
            "resume_error_internal",
            "resume_unavailable",
        ):
            if self.stats[name]:
                problems.append(f"{name}: {self.stats[name]}")
        for node in self.rig.nodes:
            text = node.log.read_text(errors="replace")
            for needle in ("deadlock", "Traceback"):
                count = text.lower().count(needle.lower())
                if count:
                    problems.append(f"{node.log}: {count} x {needle!r}")
        report.stats = self.stats
        report.faults = Counter(kind for kind, _, _ in self.faults)
        report.latency_calm_ms = [
            ms
            for sent_at, ms in self.samples
            if not any(start - 0.5 <= sent_at <= end + 3.0 for _, start, end in self.faults)
        ]


async def run_chaos(config: Config) -> Report:
    root = config.root or Path(tempfile.mkdtemp(prefix="hubbub-chaos-"))
    rig = await asyncio.to_thread(Rig, root, config)
    try:
        return await ChaosRun(config, rig).execute()
    finally:
        await asyncio.to_thread(rig.close)


def describe(report: Report) -> str:
    s = report.summary()
    lines = [
        f"created {s['created']}, acked {s['acked']} in {s['traffic_seconds']} s "
        f"({s['acked_per_second']} acked/s)",
        f"delivery in calm periods: p50 {s['delivery_calm_p50_ms']} ms, "
        f"p99 {s['delivery_calm_p99_ms']} ms ({s['calm_samples']} deliveries)",
        f"faults: {s['faults']}",
        f"client stats: {dict(sorted(s['stats'].items()))}",
        "problems: " + ("none" if not s["problems"] else "; ".join(s["problems"])),
    ]
    return "\n".join(lines)
