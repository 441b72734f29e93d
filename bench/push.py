"""Push outbox drain: pushes per second from sends to a local Expo stand-in (SQLite, PostgreSQL).

    .venv/bin/python bench/push.py [--messages 5000] [--recipients 5000] [--db both] [--rounds 1]

One hubbub process per phase (SQLite, then PostgreSQL; with --rounds R they
alternate, SQLite PG SQLite PG ...), pointed at a local Expo stand-in
(HUBBUB_EXPO_PUSH_URL) that runs in its own process, so that it never shares
the bench's or the server's event loop. RECIPIENTS users each register an Expo
device and have a direct conversation with one sender; none of them ever
connects (they are offline, so every message is pushed). The sender, on one
WebSocket, sends MESSAGES messages round robin over the conversations with
WINDOW sends in flight. With as many recipients as messages (the default)
every message is its own push whatever the outbox's pace; with fewer, messages
of one conversation that wait in the outbox together are collapsed into one
push (as the server means them to be), and the table says how many.

Measured from the first send to the last push arriving at the stand-in:
pushes per second, messages told per second, and for every message the time
from its send to the first push that tells of it (p50/p99). The stand-in
timestamps each request on arrival with the same monotonic clock as the bench.

Before the phases the stand-in's capacity is measured (sequential 100-push
requests from an httpx client, as the server's worker sends them), next to the
capacity of tests/pushstub.py's in-process ThreadingHTTPServer for comparison;
each phase also prints the CPU the stand-in used, as a share of one core.

Needs the machine's PostgreSQL for the PG phase (HUBBUB_TEST_POSTGRES_URL, as
for the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from persistence import Node, connect, drop_database, fresh_database, token

SEND_PATH = "/--/api/v2/push/send"
RECEIPTS_PATH = "/--/api/v2/push/getReceipts"


# The Expo stand-in ---------------------------------------------------------------


class _StubState:
    def __init__(self) -> None:
        self.records: list[tuple[float, str, int, int]] = []
        """(arrival, conversation id, newest seq told, messages told) per push."""
        self.requests = 0
        self.tickets = 0

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if method == "POST" and path == SEND_PATH:
            now = time.monotonic()
            messages = msgspec.json.decode(body)
            self.requests += 1
            tickets = []
            for m in messages:
                data = m.get("data") or {}
                self.records.append(
                    (now, data.get("conversation_id", ""), data.get("seq", 0), data.get("count", 1))
                )
                self.tickets += 1
                tickets.append({"status": "ok", "id": f"t{self.tickets}"})
            return 200, msgspec.json.encode({"data": tickets})
        if method == "POST" and path == RECEIPTS_PATH:
            return 200, b'{"data":{}}'
        if path == "/stats":
            cpu = os.times()
            return 200, msgspec.json.encode(
                {
                    "pushes": len(self.records),
                    "told": sum(r[3] for r in self.records),
                    "requests": self.requests,
                    "cpu": cpu.user + cpu.system,
                }
            )
        if path == "/records":
            return 200, msgspec.json.encode(self.records)
        if path == "/reset":
            self.records, self.requests = [], 0
            return 200, b"{}"
        return 404, b"{}"


class _StubProtocol(asyncio.Protocol):
    """A minimal HTTP/1.1 server: keep-alive, Content-Length bodies, nothing else."""

    def __init__(self, state: _StubState) -> None:
        self.state = state
        self.buf = bytearray()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            method, path = head[0].split(" ")[:2]
            status, reply = self.state.answer(method, path, body)
            self.transport.write(
                b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (status, len(reply)) + reply
            )


async def _serve_stub() -> None:
    loop = asyncio.get_running_loop()
    state = _StubState()  # one for all connections
    server = await loop.create_server(lambda: _StubProtocol(state), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


class ExpoStub:
    """The stand-in, in a child process (``push.py --serve-stub``)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-stub"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"
        self.send_url = self.url + SEND_PATH

    def _get(self, path: str) -> Any:
        return httpx.get(self.url + path, timeout=30).json()

    def stats(self) -> dict[str, Any]:
        return dict(self._get("/stats"))

    def records(self) -> list[tuple[float, str, int, int]]:
        return [tuple(r) for r in self._get("/records")]  # type: ignore[misc]

    def reset(self) -> None:
        self._get("/reset")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _batch(size: int) -> list[dict[str, Any]]:
    """Pushes shaped as hubbub's Expo provider composes them."""
    return [
        {
            "to": f"ExponentPushToken[bench-{i:05d}]",
            "title": "snd",
            "body": f"m{i}",
            "badge": 1,
            "sound": "default",
            "priority": "high",
            "data": {
                "type": "message",
                "conversation_id": f"c{i:05d}",
                "message_id": f"m{i:05d}",
                "seq": 1,
                "count": 1,
                "collapse_id": f"c{i:05d}",
                "push_id": f"p{i:05d}",
            },
        }
        for i in range(size)
    ]


async def _capacity(url: str, seconds: float) -> float:
    """Pushes per second, sequential 100-push requests from one httpx client."""
    batch = _batch(100)
    pushes = 0
    async with httpx.AsyncClient(timeout=10) as client:
        stop = time.monotonic() + seconds
        started = time.monotonic()
        while time.monotonic() < stop:
            r = await client.post(url, json=batch)
            r.raise_for_status()
            pushes += len(batch)
        return pushes / (time.monotonic() - started)


async def stub_capacity(stub: ExpoStub, seconds: float = 2.0) -> dict[str, float]:
    before = stub.stats()
    ours = await _capacity(stub.send_url, seconds)
    after = stub.stats()
    stub.reset()
    pushes = after["pushes"] - before["pushes"]
    cpu_us = (after["cpu"] - before["cpu"]) / pushes * 1e6 if pushes else float("nan")
    found = {"stub": ours, "stub_cpu_us": cpu_us}
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from tests import pushstub  # the tests' ThreadingHTTPServer, in this process
    except ImportError:
        return found
    with pushstub.expo() as threaded:
        found["threaded"] = await _capacity(threaded.url + pushstub.SEND_PATH, seconds)
    return found


# The drain ------------------------------------------------------------------------


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _setup(node: Any, recipients: list[str], sender: str, concurrency: int = 16) -> list[str]:
    gate = asyncio.Semaphore(concurrency)
    cids: list[str] = [""] * len(recipients)
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as client:

        async def one(i: int, user: str) -> None:
            async with gate:
                r = await client.post(
                    "/api/v1/conversations",
                    headers={"Authorization": f"Bearer {token(sender)}"},
                    json={"kind": "direct", "members": [user]},
                )
                r.raise_for_status()
                cids[i] = str(r.json()["conversation"]["id"])
                r = await client.post(
                    "/api/v1/push/devices",
                    headers={"Authorization": f"Bearer {token(user)}"},
                    json={
                        "provider": "expo",
                        "token": f"ExponentPushToken[bench-{user}]",
                        "platform": "ios",
                    },
                )
                r.raise_for_status()

        await asyncio.gather(*(one(i, u) for i, u in enumerate(recipients)))
    return cids


async def _send_all(node: Any, sender: str, cids: list[str], messages: int, window: int) -> Any:
    """Send round robin; (first send, last ack, {(cid, seq): sent at})."""
    ws = await connect(node, sender)
    sent_at: dict[int, float] = {}
    at: dict[tuple[str, int], float] = {}
    gate = asyncio.Semaphore(window)
    run = time.monotonic_ns()

    async def read() -> None:
        for _ in range(messages):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "ack":
                    break
                if frame["type"] == "error":
                    raise SystemExit(f"send refused: {frame}")
            m = frame["message"]
            at[(m["conversation_id"], m["seq"])] = sent_at.pop(frame["id"])
            gate.release()

    reader = asyncio.create_task(read())
    first = time.monotonic()
    for i in range(messages):
        await gate.acquire()
        sent_at[i + 1] = time.monotonic()
        await ws.send(
            json.dumps(
                {
                    "type": "message.send",
                    "id": i + 1,
                    "conversation_id": cids[i % len(cids)],
                    "body": f"bench message {i}",
                    "client_msg_id": f"bench-{run}-{i}",
                }
            )
        )
    await asyncio.wait_for(reader, 120)
    last_ack = time.monotonic()
    await ws.close()
    return first, last_ack, at


def _latencies(
    sent: dict[tuple[str, int], float], records: list[tuple[float, str, int, int]]
) -> tuple[list[float], int]:
    """Per message, ms from its send to the first push whose newest seq covers it."""
    by_cid: dict[str, list[tuple[int, float]]] = {}
    for (cid, seq), t in sent.items():
        by_cid.setdefault(cid, []).append((seq, t))
    pushes: dict[str, list[tuple[float, int]]] = {}
    for arrived, cid, seq, _count in records:
        pushes.setdefault(cid, []).append((arrived, seq))
    found, missing = [], 0
    for cid, items in by_cid.items():
        items.sort()
        told = sorted(pushes.get(cid, []))
        j = 0
        for seq, t in items:
            while j < len(told) and told[j][1] < seq:
                j += 1
            if j == len(told):
                missing += 1
                continue
            found.append((told[j][0] - t) * 1000)
    return found, missing


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else float("nan")


async def _wait_told(stub: ExpoStub, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = stub.stats()
        if stats["told"] >= count or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.02)


async def drain(db: str, stub: ExpoStub, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One phase: the live drain (sends and pushes at once), then a backlog's drain."""
    stub.reset()
    env = {
        "HUBBUB_EXPO_PUSH_URL": stub.send_url,
        "HUBBUB_PUSH_WINDOW": str(args.window),
        "HUBBUB_PUSH_POLL": str(args.poll),
    }
    name = None
    if db == "pg":
        name, url = await fresh_database()
        env["HUBBUB_DATABASE_URL"] = url
    data = work / f"{db}-{time.monotonic_ns()}"
    found: dict[str, Any] = {"db": db}
    try:
        node = Node(data, **env)
        try:
            recipients = [f"r{i:05d}" for i in range(args.recipients)]
            started = time.monotonic()
            cids = await _setup(node, recipients, "snd")
            found["setup_s"] = time.monotonic() - started
            stub_cpu0, node_cpu0 = stub.stats()["cpu"], _cpu(node.proc.pid)
            first, last_ack, sent = await _send_all(
                node, "snd", cids, args.messages, args.window_sends
            )
            stats = await _wait_told(stub, args.messages, args.timeout)
            node_cpu = _cpu(node.proc.pid) - node_cpu0
        finally:
            node.stop()
        records = stub.records()
        last = max((r[0] for r in records), default=first)
        elapsed = last - first
        latencies, missing = _latencies(sent, records)
        found.update(
            sends_s=last_ack - first,
            elapsed_s=elapsed,
            pushes=len(records),
            told=stats["told"],
            requests=stats["requests"],
            pushes_per_s=len(records) / elapsed if elapsed > 0 else float("nan"),
            told_per_s=stats["told"] / elapsed if elapsed > 0 else float("nan"),
            acked_per_s=args.messages / (last_ack - first),
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
            max_ms=max(latencies, default=float("nan")),
            missing=missing,
            stub_cpu=(stats["cpu"] - stub_cpu0) / elapsed if elapsed > 0 else float("nan"),
            server_cpu=node_cpu / elapsed if elapsed > 0 else float("nan"),
        )
        if args.no_backlog:
            return found
        # The backlog: the same sends with the worker off, then a process that drains them.
        node = Node(data, HUBBUB_PUSH="off", **env)
        try:
            await _send_all(node, "snd", cids, args.messages, args.window_sends)
        finally:
            node.stop()
        stub.reset()
        node = Node(data, **env)
        try:
            stats = await _wait_told(stub, args.messages, args.timeout)
        finally:
            node.stop()
        arrivals = sorted(r[0] for r in stub.records())
        span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
        first_batch = sum(1 for t in arrivals if t == arrivals[0])  # arrived at the start
        found.update(
            backlog_pushes=len(arrivals),
            backlog_s=span,
            backlog_per_s=(len(arrivals) - first_batch) / span if span > 0 else float("nan"),
        )
    finally:
        if name is not None:
            await drop_database(name)
    return found


def _row(r: dict[str, Any]) -> str:
    label = {"sqlite": "SQLite", "pg": "PostgreSQL"}[r["db"]]
    return (
        f"  {label:10} {r['pushes_per_s']:8,.0f} pushes/s  {r['told_per_s']:8,.0f} msgs/s  "
        f"p50 {r['p50_ms']:8.1f} ms  p99 {r['p99_ms']:8.1f} ms  max {r['max_ms']:8.1f} ms  "
        f"{r['pushes']:,} pushes / {r['told']:,} msgs in {r['elapsed_s']:.2f} s "
        f"(sends took {r['sends_s']:.2f} s, {r['requests']} requests, "
        f"server CPU {r['server_cpu']:.0%}, stub CPU {r['stub_cpu']:.0%}"
        f"{', MISSING ' + str(r['missing']) if r['missing'] else ''})"
        + (
            f"\n  {'':10} backlog: {r['backlog_per_s']:8,.0f} pushes/s "
            f"({r['backlog_pushes']:,} pushes queued with the worker off, drained in "
            f"{r['backlog_s']:.2f} s, first push to last)"
            if "backlog_per_s" in r
            else ""
        )
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument(
        "--recipients", type=int, default=None, help="default: as many as --messages"
    )
    parser.add_argument("--db", choices=("sqlite", "pg", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=1, help="phases of each database, alternated")
    parser.add_argument("--window", type=float, default=0.0, help="HUBBUB_PUSH_WINDOW (seconds)")
    parser.add_argument("--poll", type=float, default=0.5, help="HUBBUB_PUSH_POLL (seconds)")
    parser.add_argument("--window-sends", type=int, default=64, help="sends in flight")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for pushes")
    parser.add_argument(
        "--no-backlog", action="store_true", help="skip the drain of a queued backlog"
    )
    parser.add_argument("--no-capacity", action="store_true", help="skip the stub capacity check")
    parser.add_argument("--json", type=Path, help="also write every phase's figures here")
    parser.add_argument("--serve-stub", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stub:
        await _serve_stub()
        return
    args.recipients = args.recipients or args.messages
    work = Path(tempfile.mkdtemp(prefix="hubbub-bench-push-"))
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(
        f"{args.messages:,} messages over {args.recipients:,} direct conversations, "
        f"{args.window_sends} sends in flight, HUBBUB_PUSH_WINDOW={args.window:g} "
        f"HUBBUB_PUSH_POLL={args.poll:g}"
    )
    stub = ExpoStub()
    results: list[dict[str, Any]] = []
    try:
        if not args.no_capacity:
            cap = await stub_capacity(stub)
            line = (
                f"stub capacity (sequential 100-push requests from httpx): "
                f"{cap['stub']:,.0f} pushes/s, stub CPU {cap['stub_cpu_us']:.1f} µs/push "
                f"(one core: ~{1e6 / cap['stub_cpu_us']:,.0f} pushes/s)"
            )
            if "threaded" in cap:
                line += f"; tests/pushstub.py in-process: {cap['threaded']:,.0f} pushes/s"
            print(line)
        order = ["sqlite", "pg"] if args.db == "both" else [args.db]
        for _ in range(args.rounds):
            for db in order:
                r = await drain(db, stub, work, args)
                results.append(r)
                print(f"  (setup {r['setup_s']:.1f} s)" + _row(r), flush=True)
    finally:
        stub.close()
    print("push drain (live: first send to last push; backlog: first push to last):")
    for db in order:
        mine = [r for r in results if r["db"] == db]
        keys = ["pushes_per_s", "told_per_s", "p50_ms", "p99_ms", "backlog_per_s"]
        med = {k: statistics.median(r.get(k, float("nan")) for r in mine) for k in keys}
        label = {"sqlite": "SQLite", "pg": "PostgreSQL"}[db]
        print(
            f"  {label:10} {med['pushes_per_s']:8,.0f} pushes/s  {med['told_per_s']:8,.0f} msgs/s"
            f"  send->push p50 {med['p50_ms']:7.1f} ms  p99 {med['p99_ms']:7.1f} ms"
            f"  backlog {med['backlog_per_s']:8,.0f} pushes/s  (median of {len(mine)})"
        )
    if len(order) == 2:
        ratios = [
            pg["pushes_per_s"] / lite["pushes_per_s"]
            for lite, pg in zip(results[0::2], results[1::2], strict=True)
        ]
        paired = ", ".join(f"{x:.2f}" for x in ratios)
        print(f"  PostgreSQL / SQLite live pushes/s, paired by round: {paired}")
        if not args.no_backlog:
            ratios = [
                pg["backlog_per_s"] / lite["backlog_per_s"]
                for lite, pg in zip(results[0::2], results[1::2], strict=True)
            ]
            paired = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"  PostgreSQL / SQLite backlog pushes/s, paired by round: {paired}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
