"""Reads over millions of messages: history, conversation list, search; sends beside them.

    .venv/bin/python bench/scale.py [--backend sqlite|postgresql|both] [--messages 10000000]
        [--rounds 2] [--samples 40] [--send-seconds 8] [--members 1000] [--cache DIR]

Builds the store (bench/scale_build.py: a tenth of the messages in one
conversation, the rest over 1,000 groups of 1,000 members, ME in all of them
with nothing read, READER with everything read; cached between runs), starts
one hubbub process over it (its own migrations, the default read budget),
and prints, over HTTP as a client sees them, p50 and p99 of SAMPLES requests:

- a history page (50) at a random place of the big conversation, and of a
  random group;
- the conversation list's first page (50), of READER (everything read) and
  of ME (nothing read);
- search, first page (20): the common word and a rare one, across all of
  ME's conversations, in the big one and in a group;

then the acks of two unrelated users' sends (each in a direct conversation of
its own, 25 a second each, over WebSocket), p50 and p99, while ME reads
nothing, then the worst search (the common word across all), then the
conversation list's first page, then both back to back (ME from a process
of its own, as another client would be): alternated ROUNDS times in the
same run, with the p99 each adds to the idle one. Needs the machine's
PostgreSQL for --backend postgresql (HUBBUB_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale_build as build
from persistence import PG_ADMIN, Node, connect, no_gc_pauses, token

from hubbub import migrations

CACHE = Path(os.environ.get("HUBBUB_BENCH_CACHE", Path(tempfile.gettempdir()) / "hubbub-scale"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(label: str, spent: list[float], note: str = "") -> None:
    print(
        f"  {label:52s} p50 {pct(spent, 0.5):8.1f} ms  p99 {pct(spent, 0.99):8.1f} ms"
        f"  (n={len(spent)}){note}",
        flush=True,
    )


class Client:
    def __init__(self, node: Node) -> None:
        self.http = httpx.AsyncClient(base_url=node.url, timeout=120)
        self.failures: dict[int, int] = {}
        self.shown: dict[int, int] = {}

    def refused(self) -> str:
        """The refusals since the last call, as a note for a line."""
        new = {k: v - self.shown.get(k, 0) for k, v in self.failures.items()}
        self.shown = dict(self.failures)
        new = {k: v for k, v in new.items() if v}
        return f"  REFUSED {new}" if new else ""

    async def get(self, user: str, path: str, **params: Any) -> tuple[float, Any]:
        started = time.perf_counter()
        r = await self.http.get(
            path, params=params, headers={"Authorization": f"Bearer {token(user)}"}
        )
        spent = (time.perf_counter() - started) * 1000
        if r.status_code != 200:
            self.failures[r.status_code] = self.failures.get(r.status_code, 0) + 1
            return spent, None
        return spent, r.json()


async def last_seqs(url: str) -> dict[str, int]:
    """Each conversation's last seq, from the database (the list would carry every member)."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True) as db:
            return dict(db.execute("SELECT id, last_seq FROM conversations").fetchall())
    conn = await asyncpg.connect(url)
    try:
        return {r[0]: r[1] for r in await conn.fetch("SELECT id, last_seq FROM conversations")}
    finally:
        await conn.close()


async def sample(times: int, call: Callable[[], Awaitable[float]]) -> list[float]:
    await call()  # warm
    return [await call() for _ in range(times)]


async def reads(client: Client, shape: build.Shape, samples: int, last_seq: dict[str, int]) -> None:
    rng = random.Random(7)
    groups = shape.groups_ids()
    big_last = last_seq[shape.big]

    async def history(cid: str, top: int) -> float:
        spent, page = await client.get(
            build.ME, f"/api/v1/conversations/{cid}/messages", limit=50, before=rng.randint(2, top)
        )
        assert page is not None
        return spent

    line(
        "history page, big conversation",
        await sample(samples, lambda: history(shape.big, big_last)),
    )

    async def any_group() -> float:
        cid = rng.choice(groups)
        return await history(cid, last_seq.get(cid, 2))

    line("history page, a random group", await sample(samples, any_group))

    async def trivial() -> float:
        return (await client.get(build.ME, "/api/v1/blocks"))[0]

    line("reference: a trivial read (GET /api/v1/blocks)", await sample(samples, trivial))
    for who, label in ((build.READER, "all read"), (build.ME, "none read")):

        async def first_page(who: str = who) -> float:
            spent, page = await client.get(who, "/api/v1/conversations", limit=50)
            assert page is None or len(page["conversations"]) == 50
            return spent

        listed = await sample(samples, first_page)
        line(f"conversation list, first 50, {label}", listed, client.refused())
    small = groups[len(groups) // 2]
    for word in (build.COMMON, build.RARE):
        for scope, cid in (
            ("across all", None),
            ("big conversation", shape.big),
            ("a group", small),
        ):
            found: list[int] = []

            async def one(
                word: str = word, cid: str | None = cid, found: list[int] = found
            ) -> float:
                params: dict[str, object] = {"q": word, "limit": 20}
                if cid is not None:
                    params["conversation_id"] = cid
                spent, page = await client.get(build.ME, "/api/v1/search", **params)
                found.append(-1 if page is None else len(page["results"]))
                return spent

            spent = await sample(samples, one)
            line(f"search {word!r}, {scope}", spent, f"  results {found[-1]}{client.refused()}")


READS = {
    "idle": (),
    "search": ("search",),
    "list": ("list",),
    "search+list": ("search", "list"),
}
"""What ME reads, back to back, while the two users send."""


async def sends(node: Node, client: Client, seconds: float, reads: tuple[str, ...]) -> list[float]:
    """Ack latencies (ms) of two users' sends, 25/s each, while ME runs ``reads``."""
    latencies: list[float] = []

    async def sender(user: str, peer: str, stop: float) -> None:
        r = await client.http.post(
            "/api/v1/conversations",
            headers={"Authorization": f"Bearer {token(user)}"},
            json={"kind": "direct", "members": [peer]},
        )
        r.raise_for_status()
        cid = r.json()["conversation"]["id"]
        ws = await connect(node, user)
        n = 0
        try:
            while time.monotonic() < stop:
                n += 1
                started = time.perf_counter()
                frame = {
                    "type": "message.send",
                    "id": n,
                    "conversation_id": cid,
                    "body": f"ping {n}",
                    "client_msg_id": f"{user}-{time.time_ns()}",
                }
                await ws.send(json.dumps(frame))
                while True:
                    got = json.loads(await ws.recv())
                    if got.get("type") in ("ack", "error") and got.get("id") == n:
                        break
                if got["type"] == "error":
                    raise SystemExit(f"send refused: {got}")
                latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(max(0.0, 0.04 - (time.perf_counter() - started)))
        finally:
            await ws.close()

    async with reading(node, reads):
        stop = time.monotonic() + seconds
        await asyncio.gather(sender("sender1", "peer1", stop), sender("sender2", "peer2", stop))
    return latencies


@contextlib.asynccontextmanager
async def reading(node: Node, reads: tuple[str, ...]) -> AsyncIterator[None]:
    """ME reading ``reads`` back to back, from a process of its own, while the body runs.

    Not from this one: parsing a page of the list (hundreds of kilobytes of
    HTTP and JSON) here would hold up the sends' acks in this process's
    event loop, and the bench would time itself. That process runs at the
    lowest priority: a reading client is not on the server's machine, and
    here it would take the two cores' time from the server and the senders.
    """
    if not reads:
        yield
        return
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--read-from",
        node.url,
        "--read",
        ",".join(reads),
        "--read-token",
        token(build.ME),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        if await child.stdout.readline() != b"ready\n":
            raise SystemExit("the reading process did not start")
        yield
    finally:
        child.stdin.close()  # its signal to stop
        out, _ = await child.communicate()
    done = json.loads(out)
    if not done["reads"]:
        raise SystemExit("the reading process read nothing")
    if done["refused"]:
        print(f"  reads refused while sending, by status: {done['refused']}")
    if sum(done["refused"].values()) == done["reads"]:
        raise SystemExit("every read was refused: the sends were timed beside nothing")


async def read_until_stopped(url: str, reads: list[str], bearer: str) -> None:
    """The reading process: ME's reads back to back until stdin closes."""
    os.nice(19)
    stopped = asyncio.ensure_future(asyncio.to_thread(sys.stdin.buffer.read))
    count, refused = 0, Counter[int]()
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        headers = {"Authorization": f"Bearer {bearer}"}
        calls = {
            "search": ("/api/v1/search", {"q": build.COMMON, "limit": 20}),
            "list": ("/api/v1/conversations", {"limit": 50}),
        }
        print("ready", flush=True)
        while not stopped.done():
            for name in reads:
                path, params = calls[name]
                r = await http.get(path, params=params, headers=headers)
                count += 1
                if r.status_code != 200:
                    refused[r.status_code] += 1
    print(json.dumps({"reads": count, "refused": refused}), flush=True)


async def run(backend: str, shape: build.Shape, args: argparse.Namespace) -> None:
    print(f"{backend}: {shape.messages:,} messages (cache key {shape.key})", flush=True)
    if backend == "sqlite":
        path = await asyncio.to_thread(build.build_sqlite, shape, args.cache)
        url = f"sqlite:///{path}"
    else:
        url = await build.build_postgres(shape, PG_ADMIN)
    started = time.monotonic()
    await asyncio.to_thread(migrations.upgrade, url)  # a cache of an older schema, once
    print(f"  schema up to date in {time.monotonic() - started:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as data:
        node = Node(Path(data), HUBBUB_DATABASE_URL=url, HUBBUB_PUSH="off")
        client = Client(node)
        try:
            await reads(client, shape, args.samples, await last_seqs(url))
            runs: dict[str, list[list[float]]] = {name: [] for name in READS}
            for _ in range(args.rounds):
                for name, what in READS.items():
                    with no_gc_pauses():
                        runs[name].append(await sends(node, client, args.send_seconds, what))
            for name, rounds in runs.items():
                for i, spent in enumerate(rounds):
                    line(f"sends of 2 users, round {i + 1}, ME reading: {name}", spent)
            for name in list(READS)[1:]:
                added = [
                    pct(b, 0.99) - pct(q, 0.99)
                    for q, b in zip(runs["idle"], runs[name], strict=True)
                ]
                print(
                    f"  send p99 added by {name}: median {statistics.median(added):+.1f} ms "
                    f"(rounds: {', '.join(f'{a:+.1f}' for a in added)})"
                )
            if client.failures:
                print(f"  refused reads by status: {client.failures}")
        finally:
            await client.http.aclose()
            node.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--send-seconds", type=float, default=8.0)
    parser.add_argument("--members", type=int, default=1000, help="of each conversation")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--read-from", help=argparse.SUPPRESS)  # the reading process's
    parser.add_argument("--read", help=argparse.SUPPRESS)
    parser.add_argument("--read-token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read_from:
        await read_until_stopped(args.read_from, args.read.split(","), args.read_token)
        return
    if args.messages < 10_000:
        parser.error("--messages: at least 10,000")
    shape = build.Shape(messages=args.messages, members=args.members)
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        await run(backend, shape, args)


if __name__ == "__main__":
    asyncio.run(main())
