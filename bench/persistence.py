"""Sustained sends with acks (SQLite, PostgreSQL) and cross-process latency (3 processes).

    .venv/bin/python bench/persistence.py [--duration 10] [--senders 4] [--window 64]

1. Acked throughput: one hubbub process on SQLite, then on PostgreSQL; SENDERS
   connections, each in its own conversation, keep WINDOW sends in flight and
   count acks (an ack means committed). Prints acked messages per second.
2. Cross-process latency: three hubbub processes on PostgreSQL + Redis, a
   group of 30 members spread over them (10 each), one sender on process 0 at
   50 msg/s; prints send-to-receive p50/p99 for receivers on the sender's
   process and on the other two.

Needs the machine's PostgreSQL and Redis (HUBBUB_TEST_POSTGRES_URL,
HUBBUB_TEST_REDIS_URL as for the tests). Clients are Python (websockets); at
these rates they are far from saturated (the server is the busy process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import websockets

from hubbub.auth import mint_token

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get(
    "HUBBUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS = os.environ.get("HUBBUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = secrets.token_urlsafe(32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(user: str) -> str:
    return mint_token(SECRET, user, ttl=3600)


class Node:
    def __init__(self, data: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}/ws"
        data.mkdir(parents=True, exist_ok=True)
        full = {
            # Limits off unless set (the load comes from one machine); set them
            # high to measure what checking costs.
            "HUBBUB_SEND_RATE": "0",
            "HUBBUB_MAX_CONNECTIONS_PER_USER": "0",
            "HUBBUB_CONNECT_RATE_PER_IP": "0",
            **os.environ,
            "HUBBUB_DATA_DIR": str(data),
            "HUBBUB_JWT_SECRET": SECRET,
            "HUBBUB_PORT": str(self.port),
            "HUBBUB_LOG_LEVEL": "warning",
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hubbub", "run"],
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"hubbub on port {self.port} did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def conversation(node: Node, owner: str, members: list[str]) -> str:
    r = httpx.post(
        node.url + "/api/v1/conversations",
        headers={"Authorization": f"Bearer {token(owner)}"},
        json={"kind": "group", "title": "bench", "members": members},
        timeout=30,
    )
    r.raise_for_status()
    return str(r.json()["conversation"]["id"])


async def connect(node: Node, user: str) -> Any:
    ws = await websockets.connect(f"{node.ws}?token={token(user)}", max_queue=None)
    await ws.recv()  # hello
    await ws.send(json.dumps({"type": "ping", "id": 0}))  # live delivery from now on
    while json.loads(await ws.recv())["type"] != "ack":
        pass
    return ws


async def acked_rate(node: Node, senders: int, window: int, duration: float) -> float:
    clients = []
    for i in range(senders):
        user = f"s{i}"
        cid = conversation(node, user, [f"peer{i}"])
        clients.append((await connect(node, user), cid))
    acks = 0
    stop = time.monotonic() + duration

    async def run(ws: Any, cid: str) -> None:
        nonlocal acks
        in_flight = sent = 0
        while time.monotonic() < stop:
            while in_flight < window:
                sent += 1
                in_flight += 1
                await ws.send(
                    json.dumps(
                        {
                            "type": "message.send",
                            "id": sent,
                            "conversation_id": cid,
                            "body": "x" * 80,
                            "client_msg_id": f"{cid}-{sent}",
                        }
                    )
                )
            frame = json.loads(await ws.recv())
            if frame["type"] == "ack":
                in_flight -= 1
                acks += 1
            elif frame["type"] == "error":
                raise SystemExit(f"send refused: {frame}")

    started = time.monotonic()
    await asyncio.gather(*(run(ws, cid) for ws, cid in clients))
    elapsed = time.monotonic() - started
    for ws, _ in clients:
        await ws.close()
    return acks / elapsed


async def cross_process_latency(
    nodes: list[Node], rate: float, duration: float
) -> dict[str, list[float]]:
    users = [f"x{i:02d}" for i in range(30)]
    cid = conversation(nodes[0], users[0], users[1:])
    receivers = [(await connect(nodes[i % 3], u), i % 3) for i, u in enumerate(users)]
    sender = receivers[0][0]
    latencies: dict[str, list[float]] = {"same process": [], "other processes": []}
    sent_at: dict[str, float] = {}
    expected = int(rate * duration)

    async def receive(ws: Any, where: int, is_sender: bool) -> None:
        got = 0
        while got < expected:
            frame = json.loads(await ws.recv())
            if frame["type"] != "message.new":
                continue
            got += 1
            if not is_sender:
                at = sent_at[frame["message"]["body"]]
                key = "same process" if where == 0 else "other processes"
                latencies[key].append((time.perf_counter() - at) * 1000)

    readers = [asyncio.create_task(receive(ws, where, ws is sender)) for ws, where in receivers]
    for i in range(expected):
        body = f"m{i}"
        sent_at[body] = time.perf_counter()
        await sender.send(
            json.dumps(
                {
                    "type": "message.send",
                    "conversation_id": cid,
                    "body": body,
                    "client_msg_id": body,
                }
            )
        )
        await asyncio.sleep(1 / rate)
    await asyncio.wait_for(asyncio.gather(*readers), 30)
    for ws, _ in receivers:
        await ws.close()
    return latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else float("nan")


async def fresh_database() -> tuple[str, str]:
    name = f"hubbub_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return name, PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--rate", type=float, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hubbub-bench-"))
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")

    node = Node(work / "sqlite")
    try:
        sqlite = await acked_rate(node, args.senders, args.window, args.duration)
    finally:
        node.stop()
    name, url = await fresh_database()
    try:
        node = Node(work / "pg", HUBBUB_DATABASE_URL=url)
        try:
            pg = await acked_rate(node, args.senders, args.window, args.duration)
        finally:
            node.stop()
    finally:
        await drop_database(name)
    print(f"acked sends, {args.senders} senders x window {args.window}:")
    print(f"  SQLite      {sqlite:10,.0f} msg/s")
    print(f"  PostgreSQL  {pg:10,.0f} msg/s")

    name, url = await fresh_database()
    prefix = f"hubbub:bench:{uuid.uuid4().hex[:8]}:"
    nodes: list[Node] = []
    try:
        env = {"HUBBUB_DATABASE_URL": url, "HUBBUB_REDIS_URL": REDIS, "HUBBUB_REDIS_PREFIX": prefix}
        nodes = [Node(work / f"n{i}", **env) for i in range(3)]
        found = await cross_process_latency(nodes, args.rate, args.duration)
    finally:
        for n in nodes:
            n.stop()
        await drop_database(name)
    print(f"delivery latency, 3 processes, 30 members, {args.rate:.0f} msg/s:")
    for key, values in found.items():
        print(
            f"  {key:16} p50 {percentile(values, 50):6.2f} ms"
            f"   p99 {percentile(values, 99):6.2f} ms   ({len(values)} deliveries)"
        )


if __name__ == "__main__":
    asyncio.run(main())
