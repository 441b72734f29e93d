#!/usr/bin/env python3
"""Many idle connections: memory per connection, and how the processes answer meanwhile.

    .venv/bin/python bench/connections.py [--connections 50000] [--processes 3]
        [--per-client 10000] [--probes 500] [--messages 300]

PROCESSES hubbub processes on PostgreSQL + Redis (one process: the embedded
default, SQLite and the in-process broker). Clients are Node processes
(bench/node/idle.js, a minimal WebSocket client), PER_CLIENT connections each,
every client from a source address of its own (127.0.0.2, 127.0.0.3, ...);
each connection is a user of its own, spread evenly over the processes. A
connection counts once the server's hello arrived.

Prints, for each process, before the connections open and while they are held
(the same run, so the two compare):
- resident memory, and its growth divided by the connections the process holds;
- /health latency p50/p99 (PROBES sequential requests per process);
and a message between two users on different processes (MESSAGES at 30/s, send
to delivery) p50/p99, before and while held.

Needs Node.js; with more than one process, the machine's PostgreSQL and Redis
(HUBBUB_TEST_POSTGRES_URL, HUBBUB_TEST_REDIS_URL as for the tests). A process
here may hold 20,000 open files, so one process holds at most about 19,500.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from persistence import (
    REDIS,
    Node,
    connect,
    cpu_seconds,
    drop_database,
    fresh_database,
    no_gc_pauses,
    percentile,
    token,
)

IDLE = Path(__file__).resolve().parent / "node" / "idle.js"
FD_LIMIT = 20_000


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def settle(nodes: list[Node], limit: float = 120) -> float:
    """Seconds until every process uses under a fifth of a core (measured each second)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = [cpu_seconds(n.proc.pid) for n in nodes]
        time.sleep(1)
        if all(cpu_seconds(n.proc.pid) - b < 0.2 for n, b in zip(nodes, before, strict=True)):
            break
    return time.monotonic() - started


def health_latency(node: Node, probes: int) -> list[float]:
    out = []
    with httpx.Client(base_url=node.url, timeout=10) as client:
        for _ in range(probes):
            t = time.perf_counter()
            r = client.get("/health")
            out.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                raise SystemExit(f"/health answered {r.status_code} on port {node.port}")
    return out


async def message_latency(a: Node, b: Node, count: int, tag: str) -> list[float]:
    """Send COUNT messages from a user on A to one on B at 30/s; send-to-delivery ms."""
    sender, receiver = f"s-{tag}", f"r-{tag}"
    r = httpx.post(
        a.url + "/api/v1/conversations",
        headers={"Authorization": f"Bearer {token(sender)}"},
        json={"kind": "direct", "members": [receiver]},
        timeout=30,
    )
    r.raise_for_status()
    cid = r.json()["conversation"]["id"]
    tx, rx = await connect(a, sender), await connect(b, receiver)
    # Routing by interest: B receives the conversation once it has read the
    # receiver's conversations and subscribed (live delivery before that is
    # best effort; a client fills the gap from the next seq). Timed sends
    # start once a first one has come through.
    for i in range(100):
        body = f"{tag}-warm-{i}"
        frame = {"type": "message.send", "conversation_id": cid, "body": body}
        await tx.send(json.dumps({**frame, "client_msg_id": body}))
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(rx.recv(), 0.1))
                if frame["type"] == "message.new":
                    break
            break
        except TimeoutError:
            continue
    else:
        raise SystemExit("no message reached the receiver's process in 10 s")
    await asyncio.sleep(0.5)  # the warm-up's stragglers
    while True:
        try:
            await asyncio.wait_for(rx.recv(), 0.01)
        except TimeoutError:
            break
    sent_at: dict[str, float] = {}
    out: list[float] = []

    async def receive() -> None:
        while len(out) < count:
            frame = json.loads(await rx.recv())
            if frame["type"] == "message.new":
                out.append((time.perf_counter() - sent_at[frame["message"]["body"]]) * 1000)

    reader = asyncio.create_task(receive())
    for i in range(count):
        body = f"{tag}-{i}"
        sent_at[body] = time.perf_counter()
        await tx.send(
            json.dumps(
                {
                    "type": "message.send",
                    "conversation_id": cid,
                    "body": body,
                    "client_msg_id": body,
                }
            )
        )
        await asyncio.sleep(1 / 30)
    await asyncio.wait_for(reader, 60)
    await tx.close()
    await rx.close()
    return out


class Clients:
    """The Node processes holding the idle connections."""

    def __init__(self, work: Path, nodes: list[Node], connections: int, per_client: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        node_bin = shutil.which("node")
        if node_bin is None:
            raise SystemExit("Node.js is needed (node on PATH)")
        self.held = [0] * len(nodes)
        for c in range(math.ceil(connections / per_client)):
            lines = []
            for i in range(c * per_client, min(connections, (c + 1) * per_client)):
                where = i % len(nodes)
                self.held[where] += 1
                lines.append(f"{nodes[where].ws}?token={token(f'idle{i:06d}')}")
            urls = work / f"urls-{c}.txt"
            urls.write_text("\n".join(lines) + "\n")
            self.procs.append(
                subprocess.Popen(
                    [node_bin, str(IDLE), str(urls), "--local-address", f"127.0.0.{2 + c}"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    def wait_ready(self, timeout: float) -> tuple[int, int, float]:
        opened = failed = 0
        started = time.monotonic()
        for proc in self.procs:
            assert proc.stdout is not None
            while True:
                if time.monotonic() - started > timeout:
                    raise SystemExit("the connections did not open in time")
                line = proc.stdout.readline()
                if not line:
                    raise SystemExit("a client process ended early")
                report = json.loads(line)
                if "ready" in report:
                    opened += report["ready"]
                    failed += report["failed"]
                    break
        return opened, failed, time.monotonic() - started

    def close(self) -> int:
        dropped = 0
        for proc in self.procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()
            line = proc.stdout.readline()
            if line:
                dropped += json.loads(line).get("dropped", 0)
            proc.wait(30)
        return dropped


async def measure(nodes: list[Node], args: argparse.Namespace, tag: str) -> dict[str, Any]:
    health = [health_latency(n, args.probes) for n in nodes]
    other = nodes[1] if len(nodes) > 1 else nodes[0]
    with no_gc_pauses():
        messages = await message_latency(nodes[0], other, args.messages, tag)
    return {
        "rss": [rss_kb(n.proc.pid) for n in nodes],
        "health": health,
        "messages": messages,
    }


def report(
    nodes: list[Node], before: dict[str, Any], held: dict[str, Any], counts: list[int]
) -> None:
    print(
        f"{'process':>8} {'held':>7} {'RSS before':>11} {'RSS held':>10} {'KB/conn':>8} "
        f"{'health p50/p99 before':>22} {'health p50/p99 held':>20}"
    )
    for i, _ in enumerate(nodes):
        grown = held["rss"][i] - before["rss"][i]
        per = grown / counts[i] if counts[i] else float("nan")
        hb, hh = before["health"][i], held["health"][i]
        print(
            f"{i:>8} {counts[i]:>7,} {before['rss'][i] / 1024:>9.1f}MB "
            f"{held['rss'][i] / 1024:>8.1f}MB "
            f"{per:>8.2f} {percentile(hb, 50):>10.2f} / {percentile(hb, 99):>6.2f} ms "
            f"{percentile(hh, 50):>9.2f} / {percentile(hh, 99):>6.2f} ms"
        )
    mb, mh = before["messages"], held["messages"]
    print(
        f"message between two users ({len(mh)} at 30/s): "
        f"before p50 {percentile(mb, 50):.2f} / p99 {percentile(mb, 99):.2f} ms, "
        f"held p50 {percentile(mh, 50):.2f} / p99 {percentile(mh, 99):.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=50_000)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--per-client", type=int, default=10_000)
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    per_process = math.ceil(args.connections / args.processes)
    if per_process > FD_LIMIT - 500:
        raise SystemExit(
            f"{per_process} connections a process: more than one process may hold here"
        )
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(FD_LIMIT, hard), hard)
    )  # the servers inherit it
    work = Path(tempfile.mkdtemp(prefix="hubbub-conns-"))
    name = None
    env: dict[str, str] = {"HUBBUB_HEARTBEAT_INTERVAL": "30"}
    if args.processes > 1:
        name, env["HUBBUB_DATABASE_URL"] = await fresh_database()
        env["HUBBUB_REDIS_URL"] = REDIS
        env["HUBBUB_REDIS_PREFIX"] = f"hubbub:bench:{uuid.uuid4().hex[:8]}:"
    nodes: list[Node] = []
    try:
        nodes = [Node(work / f"n{i}", **env) for i in range(args.processes)]
        before = await measure(nodes, args, "before")
        clients = Clients(work, nodes, args.connections, args.per_client)
        try:
            opened, failed, took = clients.wait_ready(timeout=1800)
            print(
                f"{opened:,} connections open ({failed} failed) in {took:.1f} s, "
                f"from {len(clients.procs)} client addresses, over {len(nodes)} processes"
            )
            settled = settle(nodes)
            print(
                f"the processes finished the connections' work (presence, subscriptions) "
                f"{settled:.1f} s after the last one opened"
            )
            held = await measure(nodes, args, "held")
            report(nodes, before, held, clients.held)
        finally:
            dropped = clients.close()
            print(f"connections the servers closed while held: {dropped}")
    finally:
        for n in nodes:
            n.proc.terminate()
        for n in nodes:
            try:
                n.proc.wait(60)
            except subprocess.TimeoutExpired:
                print(f"process on port {n.port} took over 60 s to stop; killed")
                n.proc.kill()
        if name is not None:
            await drop_database(name)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
