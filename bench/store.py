"""CPU per message on the SQLite send path: the store's transaction alone.

    .venv/bin/python bench/store.py [--messages 30000]

Runs ``messages.append`` the way the writer thread does under load (64 jobs
in one transaction, no savepoint per job, the full-text entries written
before the commit, a step of the index's merging between two groups once
``UPKEEP_AT`` is owed: store/sqlite_worker.py) on one connection
with ``synchronous=OFF``, no worker thread, no event loop, and the server's
garbage-collector settings, and
prints CPU microseconds per stored message and the index's segments at the
end (what the merge steps left: few if they keep pace). Compare two checkouts by running
it with each one's ``src`` on PYTHONPATH, pinned to one CPU (``taskset -c 1``),
alternating a few times: the machine is noisy.
"""

from __future__ import annotations

import argparse
import gc
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from hubbub import migrations
from hubbub.models import SendItem
from hubbub.server import GC_THRESHOLD
from hubbub.store import conversations, messages
from hubbub.store.sqlite import (
    INDEX_SEGMENTS,
    SQLiteTx,
    complete,
    index_pending,
    merge_index,
)
from hubbub.store.sqlite_worker import UPKEEP_AT

GROUP = 64
WORDS = [f"w{n}" for n in range(20_000)]
BODIES = [" ".join(random.Random(n).choices(WORDS, k=12)) for n in range(1000)]
"""Twelve words of 20,000 each, so that the full-text index has real work."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=30_000)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="hubbub-store-")) / "bench.db"
    migrations.upgrade(f"sqlite:///{path}")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    tx = SQLiteTx(conn)
    conn.execute("BEGIN")
    cids = [
        complete(conversations.create_group(tx, "group", "u0", f"g{i}", ["u1", "u2"], 1)).id
        for i in range(4)
    ]
    conn.execute("COMMIT")
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)
    started = time.process_time()
    owed = 0
    for start in range(0, args.messages, GROUP):
        conn.execute("BEGIN IMMEDIATE")
        for n in range(start, start + GROUP):
            item = SendItem(cids[n % 4], BODIES[n % len(BODIES)], f"k{n}")
            (stored,) = complete(messages.append(SQLiteTx(conn), "u0", [item], n, False))
            assert not isinstance(stored, Exception), stored
        owed += index_pending(conn)
        conn.execute("COMMIT")
        if owed >= UPKEEP_AT:
            conn.execute("BEGIN IMMEDIATE")
            owed = merge_index(conn, owed)
            conn.execute("COMMIT")
    spent = time.process_time() - started
    segments = conn.execute(INDEX_SEGMENTS).fetchone()[0]
    print(f"{spent / args.messages * 1e6:.1f} us CPU per stored message, {segments} index segments")


if __name__ == "__main__":
    main()
