"""Sustained sends with acks (SQLite, PostgreSQL) and cross-process latency (3 processes).

    .venv/bin/python bench/persistence.py [--duration 10] [--senders 4] [--window 64]
        [--devices off|on|compare] [--rounds 2] [--phases acked,latency,cross]

1. Acked throughput: one hubbub process on SQLite, then on PostgreSQL; SENDERS
   connections, each in its own conversation, keep WINDOW sends in flight and
   count acks (an ack means committed). ROUNDS runs on each database, a fresh
   process and database each; prints acked messages per second (medians) and
   CPU microseconds per ack of the server, of its PostgreSQL backends and of
   the clients (this process, on the same 2 cores: what they use, the server
   cannot). Group commit on PostgreSQL needs sends from many connections at
   once: ``--senders 64 --window 16`` gives it 1,024 sends in flight.
   ``--client node`` sends from one Node.js process (bench/node/sender.js)
   instead, which leaves more of the machine to the server.
2. Cross-process latency: three hubbub processes on PostgreSQL + Redis, a
   group of 30 members spread over them (10 each), one sender on process 0 at
   50 msg/s; prints send-to-receive p50/p99 for receivers on the sender's
   process and on the other two.

--devices on: in phase 1 every recipient (the senders' peers, who never
connect) registers an Expo device first, so each send also notes its message
for push in its own transaction and the process's push worker drains the
outbox meanwhile, to a local Expo stand-in (bench/push.py's, in its own
process; HUBBUB_EXPO_PUSH_URL points at it, nothing leaves the machine).
--devices compare: phase 1 only, without and with devices alternated (ROUNDS
of each, a fresh process and database per run) on SQLite and on PostgreSQL;
prints acked/s of each, the ratio with / without and the added microseconds
per send (1e6 / with - 1e6 / without).

--before SRC: the same phase 1 also on another source tree (the code before a
change: ``git archive HEAD | tar -x -C /tmp/ab`` and its C extension built
there), alternated with this one (or the --after tree) ROUNDS times on each
database; prints each
run, the medians and their ratio. --phases picks what runs: ``acked`` (phase
1), ``latency`` (send-to-ack latency: SENDERS connections in conversations of
their own at --ack-rate messages per second in all, one send at a time each,
then one lone connection sending one message every 20 ms; p50/p99 of each, on
both databases, before and after with --before), ``cross`` (phase 2).

Needs the machine's PostgreSQL and Redis (HUBBUB_TEST_POSTGRES_URL,
HUBBUB_TEST_REDIS_URL as for the tests). Clients are Python (websockets); at
these rates they are far from saturated (the server is the busy process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
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
from collections.abc import Iterator
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


@contextlib.contextmanager
def no_gc_pauses() -> Iterator[None]:
    """While latencies are taken: no collection of this process's garbage pauses them.

    A full collection of the bench's own heap (parsed pages, kept samples)
    takes 40-60 ms here, and a send waiting on it looks like a slow server.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(user: str) -> str:
    return mint_token(SECRET, user, ttl=3600)


class Node:
    def __init__(self, data: Path, src: str | None = None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database: str | None = env.get("HUBBUB_DATABASE_URL", "").rsplit("/", 1)[-1] or None
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
        if src is not None:  # that tree's code, not this one's
            full["PYTHONPATH"] = src
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


def register_device(node: Node, user: str) -> None:
    r = httpx.post(
        node.url + "/api/v1/push/devices",
        headers={"Authorization": f"Bearer {token(user)}"},
        json={"provider": "expo", "token": f"ExponentPushToken[bench-{user}]", "platform": "ios"},
        timeout=30,
    )
    r.raise_for_status()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def database_cpu(name: str | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to database ``name``."""
    if name is None:
        return {}
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
    finally:
        await admin.close()
    return {r[0]: cpu_seconds(r[0]) for r in rows}


async def acked_rate(
    node: Node,
    senders: int,
    window: int,
    duration: float,
    devices: bool = False,
    client: str = "python",
) -> tuple[float, float, float, float]:
    """Acked sends per second, and CPU µs per ack of the server, its database and the clients.

    The clients share the machine with the server: at high rates their own
    CPU is what is left over for it.
    """
    cids = []
    for i in range(senders):
        cids.append(conversation(node, f"s{i}", [f"peer{i}"]))
        if devices:
            register_device(node, f"peer{i}")
    sockets = [await connect(node, f"s{i}") for i in range(senders)] if client == "python" else []
    server_cpu, db_cpu = cpu_seconds(node.proc.pid), await database_cpu(node.database)
    if client == "node":
        acks, elapsed, spent = await node_sends(node, cids, window, duration)
    else:
        acks, elapsed, spent = await python_sends(
            list(zip(sockets, cids, strict=True)), window, duration
        )
    server = cpu_seconds(node.proc.pid) - server_cpu
    database = sum(
        t - db_cpu.get(pid, 0.0) for pid, t in (await database_cpu(node.database)).items()
    )
    for ws in sockets:
        await ws.close()
    per_ack = 1e6 / max(acks, 1)
    return acks / elapsed, server * per_ack, database * per_ack, spent * per_ack


async def python_sends(
    clients: list[tuple[Any, str]], window: int, duration: float
) -> tuple[int, float, float]:
    """Acks, seconds and this process's CPU seconds: WINDOW sends in flight on each client."""
    acks = 0
    stop = time.monotonic() + duration
    client_cpu = time.process_time()

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
    return acks, time.monotonic() - started, time.process_time() - client_cpu


async def node_sends(
    node: Node, cids: list[str], window: int, duration: float
) -> tuple[int, float, float]:
    """The same sends from bench/node/sender.js (one Node.js process): acks, seconds, its CPU."""
    jobs = Path(tempfile.mkstemp(prefix="hubbub-senders-")[1])
    jobs.write_text(
        "".join(f"{node.ws}?token={token(f's{i}')} {cid}\n" for i, cid in enumerate(cids))
    )
    try:
        run = await asyncio.create_subprocess_exec(
            "node",
            str(ROOT / "bench" / "node" / "sender.js"),
            str(jobs),
            "--window",
            str(window),
            "--duration",
            str(duration),
            stdout=subprocess.PIPE,
        )
        out, _ = await run.communicate()
    finally:
        jobs.unlink()
    if run.returncode != 0:
        raise SystemExit("bench/node/sender.js failed")
    found = json.loads(out)
    return found["acks"], found["seconds"], found["cpu_seconds"]


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


async def on_node(db: str, work: Path, run: Any, src: str | None = None, stub: Any = None) -> Any:
    """``run(node)`` on a fresh process (and database); with a stub, pushes go to it."""
    env = {"HUBBUB_EXPO_PUSH_URL": stub.send_url} if stub is not None else {}
    name = None
    if db == "pg":
        name, env["HUBBUB_DATABASE_URL"] = await fresh_database()
    try:
        node = Node(work / f"{db}-{uuid.uuid4().hex[:8]}", src, **env)
        try:
            return await run(node)
        finally:
            node.stop()
    finally:
        if name is not None:
            await drop_database(name)


async def acked_run(
    db: str,
    work: Path,
    args: argparse.Namespace,
    devices: bool,
    stub: Any = None,
    src: str | None = None,
) -> tuple[float, float, float, float]:
    """Phase 1 on a fresh process (and database): acks/s, CPU µs per ack (server,
    database, clients)."""

    async def run(node: Node) -> tuple[float, float, float, float]:
        return await acked_rate(
            node, args.senders, args.window, args.duration, devices, args.client
        )

    found: tuple[float, float, float, float] = await on_node(db, work, run, src, stub)
    return found


async def ack_latencies(node: Node, senders: int, rate: float, duration: float) -> list[float]:
    """Send-to-ack milliseconds: ``senders`` connections, ``rate`` msg/s in all, one at a time."""
    clients = []
    for i in range(senders):
        cid = conversation(node, f"l{i}", [f"lpeer{i}"])
        clients.append((await connect(node, f"l{i}"), cid))
    found: list[float] = []
    stop = time.monotonic() + duration

    async def run(ws: Any, cid: str, offset: float) -> None:
        await asyncio.sleep(offset)
        n = 0
        while time.monotonic() < stop:
            n += 1
            started = time.perf_counter()
            await ws.send(
                json.dumps(
                    {
                        "type": "message.send",
                        "id": n,
                        "conversation_id": cid,
                        "body": "x" * 80,
                        "client_msg_id": f"{cid}-{n}",
                    }
                )
            )
            while (frame := json.loads(await ws.recv()))["type"] != "ack":
                if frame["type"] == "error":
                    raise SystemExit(f"send refused: {frame}")
            took = time.perf_counter() - started
            found.append(took * 1000)
            await asyncio.sleep(max(0.0, senders / rate - took))

    await asyncio.gather(*(run(ws, cid, i / rate) for i, (ws, cid) in enumerate(clients)))
    for ws, _ in clients:
        await ws.close()
    return found


async def latency_run(
    db: str, work: Path, args: argparse.Namespace, src: str | None
) -> tuple[list[float], list[float]]:
    """Send-to-ack latency at moderate load, then of a lone sender (one every 20 ms)."""

    async def run(node: Node) -> tuple[list[float], list[float]]:
        with no_gc_pauses():
            loaded = await ack_latencies(node, args.senders, args.ack_rate, args.duration)
        with no_gc_pauses():
            lone = await ack_latencies(node, 1, 50, min(args.duration, 5))
        return loaded, lone

    found: tuple[list[float], list[float]] = await on_node(db, work, run, src)
    return found


def trees(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """The code to measure: this tree (or --after), and the --before one."""
    return [("after", args.after)] + ([("before", args.before)] if args.before else [])


async def compare_acked(work: Path, args: argparse.Namespace, stub: Any = None) -> None:
    found: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for db in ("sqlite", "pg"):
        for _ in range(args.rounds):
            for label, src in reversed(trees(args)):
                rate, *spent = await acked_run(db, work, args, bool(stub), stub, src)
                server, database, client = spent
                found.setdefault((db, label), []).append(rate)
                cpu.setdefault((db, label), []).append((server, database, client))
                print(
                    f"  {db:6} {label:6} {rate:10,.0f} msg/s   CPU per ack: server "
                    f"{server:6.0f} µs, database {database:6.0f} µs, clients {client:6.0f} µs",
                    flush=True,
                )
    extra = ", a push device per recipient" if stub is not None else ""
    print(f"acked sends, {args.senders} senders x window {args.window}{extra} (medians):")
    for db, name in (("sqlite", "SQLite"), ("pg", "PostgreSQL")):
        line = ""
        for label, _ in trees(args):
            rate = statistics.median(found[(db, label)])
            server = statistics.median(c[0] for c in cpu[(db, label)])
            database = statistics.median(c[1] for c in cpu[(db, label)])
            client = statistics.median(c[2] for c in cpu[(db, label)])
            line += (
                f"   {label} {rate:8,.0f} msg/s "
                f"({server:4.0f} + {database:4.0f} + {client:4.0f} µs CPU)"
            )
        if args.before:
            ratio = statistics.median(found[(db, "after")]) / statistics.median(
                found[(db, "before")]
            )
            line += f"   ratio {ratio:.2f}"
        print(f"  {name:10}{line}")


async def compare_latency(work: Path, args: argparse.Namespace) -> None:
    print(
        f"send-to-ack latency, {args.senders} senders at {args.ack_rate:.0f} msg/s in all, "
        "then one lone sender at 50 msg/s:"
    )
    for db, name in (("sqlite", "SQLite"), ("pg", "PostgreSQL")):
        for label, src in reversed(trees(args)):
            loaded, lone = await latency_run(db, work, args, src)
            print(
                f"  {name:10} {label:6}  loaded p50 {percentile(loaded, 50):6.2f} ms "
                f"p99 {percentile(loaded, 99):6.2f} ms ({len(loaded)})   "
                f"lone p50 {percentile(lone, 50):6.2f} ms p99 {percentile(lone, 99):6.2f} ms",
                flush=True,
            )


async def compare_devices(work: Path, args: argparse.Namespace) -> None:
    from push import ExpoStub  # bench/push.py, the local Expo stand-in

    stub = ExpoStub()
    found: dict[tuple[str, bool], list[float]] = {}
    try:
        for db in ("sqlite", "pg"):
            for _ in range(args.rounds):
                for devices in (False, True):
                    rate, *_ = await acked_run(db, work, args, devices, stub)
                    found.setdefault((db, devices), []).append(rate)
                    print(
                        f"  {db:6} {'with' if devices else 'without':7} devices "
                        f"{rate:10,.0f} msg/s",
                        flush=True,
                    )
        pushes = stub.stats()["pushes"]
    finally:
        stub.close()
    print(
        f"acked sends, {args.senders} senders x window {args.window}, without and with a "
        f"device per recipient ({args.rounds} rounds each, alternated; {pushes:,} pushes "
        "reached the stand-in):"
    )
    for db, label in (("sqlite", "SQLite"), ("pg", "PostgreSQL")):
        off, on = found[(db, False)], found[(db, True)]
        paired = [b / a for a, b in zip(off, on, strict=True)]
        a, b = statistics.median(off), statistics.median(on)
        print(
            f"  {label:10}  without {a:8,.0f} msg/s  with {b:8,.0f} msg/s  "
            f"ratio {b / a:.3f} (paired {', '.join(f'{x:.3f}' for x in paired)})  "
            f"added {1e6 / b - 1e6 / a:+.1f} µs per send"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument(
        "--devices",
        choices=("off", "on", "compare"),
        default="off",
        help="phase 1 with a push device per recipient (on), or without and with (compare)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="acked, --devices compare: runs of each (medians)"
    )
    parser.add_argument("--before", help="another tree's src/ to compare with (phase 1, latency)")
    parser.add_argument("--after", help="measure that tree's src/ instead of this one's")
    parser.add_argument("--phases", default="acked,latency,cross", help="comma-separated")
    parser.add_argument(
        "--client",
        choices=("python", "node"),
        default="python",
        help="acked: the sending clients (node: bench/node/sender.js, cheaper per frame)",
    )
    parser.add_argument("--ack-rate", type=float, default=1000, help="latency phase: msg/s in all")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hubbub-bench-"))
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    if args.devices == "compare":
        await compare_devices(work, args)
        return

    phases = set(args.phases.split(","))
    if "acked" in phases:
        stub = None
        if args.devices == "on":
            from push import ExpoStub  # bench/push.py, the local Expo stand-in

            stub = ExpoStub()
        try:
            await compare_acked(work, args, stub)
        finally:
            if stub is not None:
                stub.close()
    if "latency" in phases:
        await compare_latency(work, args)
    if "cross" in phases:
        await cross_phase(work, args)


async def cross_phase(work: Path, args: argparse.Namespace) -> None:
    name, url = await fresh_database()
    prefix = f"hubbub:bench:{uuid.uuid4().hex[:8]}:"
    nodes: list[Node] = []
    try:
        env = {"HUBBUB_DATABASE_URL": url, "HUBBUB_REDIS_URL": REDIS, "HUBBUB_REDIS_PREFIX": prefix}
        nodes = [Node(work / f"n{i}", **env) for i in range(3)]
        with no_gc_pauses():
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
