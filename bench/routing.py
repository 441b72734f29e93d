#!/usr/bin/env python3
"""CPU per event of each process, routing by interest against one channel for all.

    .venv/bin/python bench/routing.py                      # 1, 3 and 6 processes
    .venv/bin/python bench/routing.py --processes 3,6 --messages 3000 --rounds 2

For each process count, and for ``HUBBUB_ROUTING=broadcast`` (every process
receives and decodes every event) then ``interest`` (a process receives the
events of its users' conversations), in the same run and alternated: start
that many hubbub processes on a fresh PostgreSQL database and the machine's
Redis (127.0.0.1, a prefix of the run's own), spread ``--users`` WebSocket
clients over them round-robin, make ``--groups`` groups of ``--group-size``
random members, send ``--messages`` messages (each from a random member of a
random group, ``--window`` unacked at most), wait until every member received
every message of its groups (bounded by ``--timeout``), and read each
process's CPU seconds (utime + stime of /proc/<pid>/stat) over the sends.

``--observers K`` adds K processes with no user connected: in broadcast mode
they still receive and decode every event, so their CPU per event is the
relay's cost alone (with interest they receive nothing). ``--wide N`` then
measures one user in N groups connecting: how many routing channels its
process subscribes to and how long until it follows all N.

Prints, per run, each process's CPU milliseconds per event published
cluster-wide (its CPU over the run / messages sent), their mean, and the
events each process received from Redis (``hubbub_broker_received``); then the
interest/broadcast ratio of the mean per process count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.services import REDIS_URL, fresh_postgres
from tests.support import ServerProcess, create_group, token

from hubbub.broker.routing import shard

TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 90.0  # seconds for a process to answer /health on a loaded machine


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                return float(s.value)
    return 0.0


def start(server: ServerProcess) -> None:
    server.data_dir.mkdir(parents=True, exist_ok=True)
    with open(server.log, "ab") as log:
        server.proc = subprocess.Popen(
            [sys.executable, "-m", "hubbub", "run"], env=server.env, stdout=log, stderr=log
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited: {server.log.read_text()}")
        try:
            if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not start: {server.log.read_text()}")


@dataclass
class Member:
    """One WebSocket client: counts the messages it receives, matches acks to sends."""

    user: str
    ws: Any
    received: int = 0
    acks: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    next_id: int = 0

    async def read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "message.new":
                self.received += 1
            elif kind in ("ack", "error") and frame.get("id") in self.acks:
                self.acks.pop(frame["id"]).set_result(frame)

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        frame["id"] = self.next_id
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.acks[self.next_id] = done
        await self.ws.send(json.dumps(frame))
        reply = await asyncio.wait_for(done, 30)
        assert reply["type"] == "ack", reply
        return reply

    async def send(self, cid: str, body: str) -> None:
        frame = {"type": "message.send", "conversation_id": cid, "body": body}
        await self.request({**frame, "client_msg_id": uuid.uuid4().hex})


@dataclass
class Result:
    mode: str
    processes: int
    messages: int
    cpu_ms_per_event: list[float]
    observer_ms_per_event: list[float]
    received: list[float]
    delivered: int
    expected: int
    seconds: float

    @property
    def mean(self) -> float:
        return sum(self.cpu_ms_per_event) / len(self.cpu_ms_per_event)


async def one_run(args: argparse.Namespace, mode: str, processes: int, seed: int) -> Result:
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="hubbub-routing-"))
    async with fresh_postgres() as database_url:
        env = {
            "HUBBUB_DATABASE_URL": database_url,
            "HUBBUB_REDIS_URL": REDIS_URL,
            "HUBBUB_REDIS_PREFIX": f"hubbub:bench:{uuid.uuid4().hex[:10]}:",
            "HUBBUB_ROUTING": mode,
            "HUBBUB_ROUTING_SHARDS": str(args.shards),
        }
        nodes = [ServerProcess(root / f"node{i}", **env) for i in range(processes)]
        # Observers: processes with no user connected; in broadcast mode they
        # still receive every event, which is the relay's cost alone.
        nodes += [ServerProcess(root / f"obs{i}", **env) for i in range(args.observers)]
        members: list[Member] = []
        readers: list[asyncio.Task[None]] = []
        try:
            start(nodes[0])  # migrates; the others find the schema ready
            await asyncio.gather(*(asyncio.to_thread(start, n) for n in nodes[1:]))
            users = [f"u{i}" for i in range(args.users)]
            groups: list[tuple[str, list[str]]] = []
            for g in range(args.groups):
                chosen = rng.sample(users, args.group_size)
                cid = await asyncio.to_thread(
                    create_group, nodes[g % processes], chosen[0], chosen[1:]
                )
                groups.append((cid, chosen))
            for i, user in enumerate(users):
                node = nodes[i % processes]
                ws = await websockets.connect(
                    f"{node.ws_url}?token={token(user)}", max_size=None, open_timeout=30
                )
                members.append(Member(user, ws))
                readers.append(asyncio.create_task(members[-1].read()))
            by_user = {m.user: m for m in members}
            # As a client does on connecting: tell the session where it stands
            # (the first live event of a conversation would start it otherwise).
            cursors: dict[str, dict[str, int]] = {}
            for cid, chosen in groups:
                for user in chosen:
                    cursors.setdefault(user, {})[cid] = 0
            await asyncio.gather(
                *(
                    m.request({"type": "resume", "cursors": cursors.get(m.user, {})})
                    for m in members
                )
            )
            await asyncio.sleep(2.0)  # connections settled, their presence sent
            expected = 0
            plan = []
            for _ in range(args.messages):
                cid, chosen = rng.choice(groups)
                plan.append((by_user[rng.choice(chosen)], cid))
                expected += len(chosen)
            before = [m.received for m in members]
            received_before = [metric(n, "hubbub_broker_received_total") for n in nodes]
            assert all(n.proc is not None for n in nodes)
            cpu_before = [cpu_seconds(n.proc.pid) for n in nodes if n.proc]
            began = time.monotonic()
            window = asyncio.Semaphore(args.window)

            async def send(member: Member, cid: str, i: int) -> None:
                async with window:
                    await member.send(cid, f"m{i}")

            await asyncio.gather(*(send(m, cid, i) for i, (m, cid) in enumerate(plan)))
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                delivered = sum(m.received for m in members) - sum(before)
                if delivered >= expected:
                    break
                await asyncio.sleep(0.05)
            seconds = time.monotonic() - began
            cpu_after = [cpu_seconds(n.proc.pid) for n in nodes if n.proc]
            received_after = [metric(n, "hubbub_broker_received_total") for n in nodes]
            delivered = sum(m.received for m in members) - sum(before)
            return Result(
                mode=mode,
                processes=processes,
                messages=args.messages,
                cpu_ms_per_event=[
                    (a - b) * 1000 / args.messages
                    for a, b in zip(cpu_after[:processes], cpu_before[:processes], strict=True)
                ],
                observer_ms_per_event=[
                    (a - b) * 1000 / args.messages
                    for a, b in zip(cpu_after[processes:], cpu_before[processes:], strict=True)
                ],
                received=[a - b for a, b in zip(received_after, received_before, strict=True)],
                delivered=delivered,
                expected=expected,
                seconds=seconds,
            )
        finally:
            for task in readers:
                task.cancel()
            for m in members:
                await m.ws.close()
            for n in nodes:
                n.stop()


def describe(r: Result) -> str:
    per = " ".join(f"{x:6.3f}" for x in r.cpu_ms_per_event)
    got = " ".join(f"{int(x)}" for x in r.received)
    short = "" if r.delivered >= r.expected else f"  SHORT {r.expected - r.delivered}"
    if r.observer_ms_per_event:
        short += "  observers [" + " ".join(f"{x:6.3f}" for x in r.observer_ms_per_event) + "]"
    return (
        f"{r.mode:9} {r.processes} proc  mean {r.mean:6.3f} ms/event  per process [{per}]"
        f"  received [{got}]  delivered {r.delivered}/{r.expected} in {r.seconds:.1f} s{short}"
    )


async def wide(args: argparse.Namespace) -> None:
    """One user in ``--wide`` conversations connects: how long until its process follows them."""
    root = Path(tempfile.mkdtemp(prefix="hubbub-routing-"))
    async with fresh_postgres() as database_url:
        env = {
            "HUBBUB_DATABASE_URL": database_url,
            "HUBBUB_REDIS_URL": REDIS_URL,
            "HUBBUB_REDIS_PREFIX": f"hubbub:bench:{uuid.uuid4().hex[:10]}:",
            "HUBBUB_ROUTING": "interest",
            "HUBBUB_ROUTING_SHARDS": str(args.shards),
        }
        node = ServerProcess(root / "node0", **env)
        start(node)
        try:
            async with httpx.AsyncClient(base_url=node.url, timeout=30) as http:
                window = asyncio.Semaphore(8)
                made: list[str] = []

                async def make(i: int) -> None:
                    async with window:
                        r = await http.post(
                            "/api/v1/conversations",
                            headers={"Authorization": f"Bearer {token('wide')}"},
                            json={"kind": "group", "title": f"w{i}", "members": [f"w{i}"]},
                        )
                        assert r.status_code == 201, r.text
                        made.append(r.json()["conversation"]["id"])

                await asyncio.gather(*(make(i) for i in range(args.wide)))
            # Its conversations' channels, and the user's own.
            expected = len({shard(cid, args.shards) for cid in made}) + 1
            began = time.monotonic()
            ws = await websockets.connect(f"{node.ws_url}?token={token('wide')}", open_timeout=30)
            deadline = began + 60
            watched = channels = 0.0
            while time.monotonic() < deadline:
                watched = await asyncio.to_thread(metric, node, "hubbub_broker_watched")
                channels = await asyncio.to_thread(metric, node, "hubbub_broker_channels")
                if watched >= args.wide and channels >= expected:
                    break
                await asyncio.sleep(0.05)
            took = time.monotonic() - began
            await asyncio.sleep(0.5)
            channels = await asyncio.to_thread(metric, node, "hubbub_broker_channels")
            await ws.close()
            print(
                f"one user in {args.wide} conversations: {int(watched)} watched, "
                f"{int(channels)} routing channels subscribed (of {expected} expected, "
                f"shards {args.shards}), "
                f"{took:.2f} s from connect to following them (metrics polled every 50 ms)"
            )
        finally:
            node.stop()


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--processes", default="1,3,6", help="process counts, comma-separated")
    p.add_argument("--users", type=int, default=120)
    p.add_argument("--groups", type=int, default=200)
    p.add_argument("--group-size", type=int, default=3)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--window", type=int, default=16, help="unacked sends at most, in all")
    p.add_argument("--shards", type=int, default=1024, help="HUBBUB_ROUTING_SHARDS")
    p.add_argument("--rounds", type=int, default=1, help="alternations of the two modes")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for deliveries")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--observers", type=int, default=0, help="processes with no user connected")
    p.add_argument("--wide", type=int, default=0, help="also: one user in this many groups")
    args = p.parse_args()
    if args.wide > 5000:
        p.error("bounded: --wide at most 5000")
    counts = [int(c) for c in args.processes.split(",")]
    if max(counts) + args.observers > 8 or args.messages > 20_000 or args.users > 2_000:
        p.error("bounded: at most 8 processes (observers included), 20,000 messages, 2,000 users")
    results: list[Result] = []
    failed = False
    for n in counts:
        for r in range(args.rounds):
            order = ("broadcast", "interest") if r % 2 == 0 else ("interest", "broadcast")
            for mode in order:
                result = await one_run(args, mode, n, args.seed + r)
                print(describe(result), flush=True)
                failed = failed or result.delivered < result.expected
                results.append(result)
    if args.wide:
        await wide(args)
    print()
    print("processes  broadcast ms/event  interest ms/event  interest/broadcast  (per process)")
    for n in counts:
        old = [r.mean for r in results if r.processes == n and r.mode == "broadcast"]
        new = [r.mean for r in results if r.processes == n and r.mode == "interest"]
        o, w = sum(old) / len(old), sum(new) / len(new)
        line = f"{n:9}  {o:18.3f}  {w:17.3f}  {w / o:18.2f}"
        if args.observers:
            old_obs = [
                x
                for r in results
                if r.processes == n and r.mode == "broadcast"
                for x in r.observer_ms_per_event
            ]
            new_obs = [
                x
                for r in results
                if r.processes == n and r.mode == "interest"
                for x in r.observer_ms_per_event
            ]
            oo, no = sum(old_obs) / len(old_obs), sum(new_obs) / len(new_obs)
            line += f"   observers: broadcast {oo:.3f}, interest {no:.3f} ms/event"
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
