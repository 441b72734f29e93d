"""Presence storm benchmark: a group of N members connecting at once.

For each case it starts a fresh hubbub (SQLite, one process), creates one
group of N members, then connects all N at once from several client processes
(a process may hold 20,000 descriptors, and the server needs as many as the
clients) and counts the ``presence`` frames they receive until, once all are
connected, none has come for ``--quiet`` seconds. It prints, per case: frames
received, the time from the go until the last presence frame or subscription
ack (the storm: all presence work done), the time until every member was
connected, and the server's CPU seconds (per frame when there are frames).

- ``old``: ``HUBBUB_PRESENCE_FANOUT_MAX`` above N, so every member is told
  about every other one (today's behaviour in small groups): the reference,
  quadratic, so only run at small N.
- ``new``: the default bound (100): no fan-out in the group; each member
  subscribes (the ``presence`` command) to ``--watch`` other members, as a
  client showing a member list does.

    .venv/bin/python bench/presence.py                      # old 1000, new 1000/5000/10000
    .venv/bin/python bench/presence.py --cases old:1000,new:1000 --quiet 2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PER_WORKER = 2500  # connections per client process
CONNECT_TIMEOUT = 60.0
MAX_SECONDS = 300.0  # a case never runs longer than this
PRESENCE = b'{"type":"presence"'
ACK = b'{"type":"ack"'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The client side: one process, many raw WebSocket connections ---------------


class Counter:
    def __init__(self) -> None:
        self.presence = 0
        self.last = 0.0
        self.closed = 0
        self.connected = 0
        self.acked = 0.0  # when the last subscription's ack came
        self.acks = 0  # connections whose subscription was answered


async def one_client(
    port: int, tok: str, watch: list[str], counter: Counter, stop: asyncio.Event
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws?token={tok} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    counter.connected += 1
    if watch:
        payload = json.dumps({"type": "presence", "id": 1, "subscribe": watch}).encode()
        writer.write(masked(payload))
    # Counting the frames' first bytes in the stream (in C) instead of parsing
    # each frame keeps one client process ahead of a storm of a million.
    carry = b""
    waiting = bool(watch)
    try:
        while not stop.is_set():
            chunk = await reader.read(1 << 16)
            if not chunk:
                counter.closed += 1
                return
            data = carry + chunk
            found = data.count(PRESENCE)
            if found:
                counter.presence += found
                counter.last = time.time()
            if waiting and ACK in data:
                waiting = False
                counter.acks += 1
                counter.acked = time.time()
            carry = data[-(len(PRESENCE) - 1) :]
    finally:
        writer.close()


def masked(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def worker(port: int, jobs: list[tuple[str, list[str]]], go_at: float) -> None:
    counter = Counter()
    stop = asyncio.Event()
    await asyncio.sleep(max(0.0, go_at - time.time()))
    tasks = [asyncio.create_task(one_client(port, t, w, counter, stop)) for t, w in jobs]
    # Report every 0.25 s: frames so far, the last one's time, connections closed.
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    reading = asyncio.create_task(stdin.readline())
    while not reading.done():
        failed = sum(1 for t in tasks if t.done() and t.exception() is not None)
        report = [
            counter.presence,
            max(counter.last, counter.acked),
            counter.closed,
            failed,
            counter.connected,
            counter.acks if jobs[0][1] else counter.connected,
        ]
        print(json.dumps(report), flush=True)
        await asyncio.wait([reading], timeout=0.25)
    stop.set()
    for task in tasks:
        task.cancel()


# The coordinator ------------------------------------------------------------


def run_case(args: argparse.Namespace, mode: str, n: int) -> dict[str, Any]:
    import httpx
    import jwt

    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="hubbub-presence-"))
    secret = secrets.token_urlsafe(32)
    env = dict(os.environ)
    env.update(
        HUBBUB_DATA_DIR=str(data),
        HUBBUB_JWT_SECRET=secret,
        HUBBUB_ENV="dev",
        HUBBUB_LOG_LEVEL="warning",
        HUBBUB_SEND_RATE="0",
        HUBBUB_CONNECT_RATE_PER_IP="0",
        HUBBUB_MAX_CONNECTIONS_PER_USER="0",
        HUBBUB_MAX_GROUP_MEMBERS=str(max(n, 10_000)),
        # Every frame of the storm is counted: no client closed as too slow
        # because the load generator shares the machine.
        HUBBUB_OUTBOUND_BUFFER_BYTES=str(256 * 1024 * 1024),
        HUBBUB_HEARTBEAT_INTERVAL="600",  # the raw clients answer no pings
        PYTHONPATH=os.pathsep.join(p for p in [args.src, env.get("PYTHONPATH", "")] if p),
    )
    if mode == "old":
        env["HUBBUB_PRESENCE_FANOUT_MAX"] = str(n + 1)
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            args.python,
            *args.profile,
            "-m",
            "hubbub",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    workers: list[subprocess.Popen[str]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=120) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"the server did not start; see {data / 'server.log'}")
                time.sleep(0.1)
            users = [f"u{i:05d}" for i in range(n)]
            exp = int(time.time()) + 3600
            tokens = [jwt.encode({"sub": u, "exp": exp}, secret, algorithm="HS256") for u in users]
            r = http.post(
                "/api/v1/conversations",
                headers={"Authorization": f"Bearer {tokens[0]}"},
                json={"kind": "group", "title": "storm", "members": users[1:]},
            )
            assert r.status_code == 201, r.text
        rng = random.Random(n)
        watch = args.watch if mode == "new" else 0
        jobs = [(t, rng.sample(users, watch) if watch else []) for t in tokens]
        cpu_before = cpu_seconds(server.pid)
        go_at = time.time() + 1.0 + n / 5000  # every worker ready, then all at once
        for start in range(0, n, PER_WORKER):
            spec = json.dumps({"port": port, "jobs": jobs[start : start + PER_WORKER], "go": go_at})
            proc = subprocess.Popen(
                [args.python, __file__, "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": ""},
            )
            assert proc.stdin is not None
            proc.stdin.write(spec + "\n")
            proc.stdin.flush()
            workers.append(proc)
        state: list[list[Any]] = [[0, 0.0, 0, 0, 0, 0] for _ in workers]
        connected_at = 0.0
        quiet_since = time.monotonic()
        total = -1
        while time.monotonic() - quiet_since < args.quiet:
            for i, proc in enumerate(workers):
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if line:
                    state[i] = json.loads(line)
            now_total = sum(s[0] for s in state) + int(sum(s[1] for s in state) * 1000)
            everyone = sum(s[3] + s[4] for s in state) >= n
            if everyone and not connected_at:
                connected_at = time.time()
            answered = sum(s[3] + s[5] for s in state) >= n  # every subscription acked
            if now_total != total or not everyone or not answered:
                total = now_total
                quiet_since = time.monotonic()
            if time.time() - go_at > MAX_SECONDS:
                print(f"  ({mode} {n}: stopped after {MAX_SECONDS:.0f} s)", file=sys.stderr)
                break
        cpu = cpu_seconds(server.pid) - cpu_before
        last = max((s[1] for s in state), default=0.0)
        frames = sum(s[0] for s in state)
        return {
            "mode": mode,
            "members": n,
            "frames": frames,
            "storm_s": max(0.0, last - go_at) if last else 0.0,
            "connected_s": connected_at - go_at if connected_at else None,
            "server_cpu_s": cpu,
            "closed": sum(s[2] for s in state),
            "failed": sum(s[3] for s in state),
        }
    finally:
        for proc in workers:
            if proc.stdin is not None:
                proc.stdin.close()  # ends the worker
        for proc in workers:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the server and clients too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="old:1000,new:1000,new:5000,new:10000")
    parser.add_argument("--watch", type=int, default=50, help="users each member subscribes to")
    parser.add_argument("--quiet", type=float, default=3.0, help="seconds without presence: over")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--src", default=str(REPO / "src"), help="PYTHONPATH of the server")
    parser.add_argument("--profile", metavar="FILE", help="run the server under cProfile")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    if args.worker:
        spec = json.loads(sys.stdin.readline())
        jobs = [(t, w) for t, w in spec["jobs"]]
        asyncio.run(worker(spec["port"], jobs, spec["go"]))
        return
    print(
        f"{'case':>12} {'frames':>12} {'storm s':>9} {'connect s':>10}"
        f" {'server CPU s':>13} {'µs/frame':>9}"
    )
    for case in args.cases.split(","):
        mode, n = case.split(":")
        r = run_case(args, mode, int(n))
        per = f"{r['server_cpu_s'] / r['frames'] * 1e6:.1f}" if r["frames"] else "-"
        note = (
            f"  ({r['closed']} closed, {r['failed']} failed)" if r["closed"] or r["failed"] else ""
        )
        connected = "-" if r["connected_s"] is None else f"{r['connected_s']:.2f}"
        print(
            f"{mode + ' ' + n:>12} {r['frames']:>12,} {r['storm_s']:>9.2f} {connected:>10}"
            f" {r['server_cpu_s']:>13.2f} {per:>9}{note}",
            flush=True,
        )


if __name__ == "__main__":
    main()
