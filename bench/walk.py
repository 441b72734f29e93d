#!/usr/bin/env python3
"""What the per-session exactly-once check costs the fan-out walk, per recipient.

    .venv/bin/python bench/walk.py [--receivers 1000] [--calls 2000] [--repeat 15]

Times ``deliver`` (compiled and pure Python) over RECEIVERS sessions whose
writers queue without a system call, so only the walk is measured:

  no check    seq 0: an event outside any stream (no per-session check)
  next        a stream event each session takes (its ``high`` moves on)
  duplicate   a stream event every session already has (dropped)

Prints the best and median nanoseconds per recipient of REPEAT rounds of
CALLS calls, and the check's cost against "no check" in the same run. On the
real path each recipient also costs a ``send()`` system call (several
microseconds); bench/fanout.py measures that whole path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from hubbub.gateway import delivery


class Writer:
    busy = True  # always queued: no send(), the walk alone is timed

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.push = self.frames.append


class Session:
    def __init__(self) -> None:
        self.writer = Writer()
        self.held: list[Any] | None = None
        self.high: dict[str, int] = {"c": 0}


def measure(deliver: Any, receivers: int, calls: int, repeat: int) -> dict[str, list[float]]:
    sessions = {f"u{i}": [Session()] for i in range(receivers)}
    users = tuple(sessions)
    frame = b"x" * 100
    failed: list[Any] = []
    seq = 0
    rounds: dict[str, list[float]] = {"no check": [], "next": [], "duplicate": []}
    for _ in range(repeat):
        for mode in rounds:
            start = time.perf_counter_ns()
            for _ in range(calls):
                if mode == "no check":
                    deliver(sessions, users, frame, False, failed, "c", 0)
                elif mode == "next":
                    seq += 1
                    deliver(sessions, users, frame, False, failed, "c", seq)
                else:
                    deliver(sessions, users, frame, False, failed, "c", seq)
            elapsed = time.perf_counter_ns() - start
            rounds[mode].append(elapsed / (calls * receivers))
            for s in sessions.values():
                s[0].writer.frames.clear()
    assert not failed
    return rounds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--receivers", type=int, default=1000)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args()
    impls = [("python", delivery.deliver_py)]
    if delivery.deliver_c is not None:
        impls.insert(0, ("compiled", delivery.deliver_c))
    print(f"{args.receivers} receivers, {args.calls} calls x {args.repeat} rounds")
    print("nanoseconds per recipient")
    print(f"{'walk':10} {'mode':10} {'best':>7} {'median':>7} {'vs no check':>12}")
    for name, deliver in impls:
        calls = args.calls if name == "compiled" else max(1, args.calls // 10)
        rounds = measure(deliver, args.receivers, calls, args.repeat)
        base = statistics.median(rounds["no check"])
        for mode, values in rounds.items():
            med = statistics.median(values)
            extra = "" if mode == "no check" else f"{med - base:+.1f} ns"
            print(f"{name:10} {mode:10} {min(values):7.1f} {med:7.1f} {extra:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
