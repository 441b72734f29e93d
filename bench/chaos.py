#!/usr/bin/env python3
"""Long chaos runs: three processes on a private PostgreSQL and Redis, faults at random.

    .venv/bin/python bench/chaos.py --messages 100000            # until 100,000 are sent
    .venv/bin/python bench/chaos.py --duration 120 --json out.json

What a run does and checks is described in tests/scaleout/chaos.py (the suite
runs a short one). Prints acked sends per second, delivery p50/p99 in calm
periods (no fault within 0.5 s before to 3 s after the send), the faults,
the clients' counters, and the problems found; exits 1 when there are any.
Needs PostgreSQL's server programs (initdb, pg_ctl) and redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.scaleout.chaos import Config, describe, run_chaos


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=3600.0, help="seconds of traffic at most")
    p.add_argument("--messages", type=int, default=None, help="stop after sending this many")
    p.add_argument("--users", type=int, default=12)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--burst", type=int, default=4, help="messages per burst")
    p.add_argument("--burst-every", type=float, default=0.1, help="seconds between bursts")
    p.add_argument("--window", type=int, default=32, help="unacked sends per member")
    p.add_argument("--resume-limit", type=int, default=100)
    p.add_argument("--calm", default="3,6", help="seconds between faults, at least,at most")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args()
    config = Config(
        duration=args.duration,
        users=args.users,
        groups=args.groups,
        burst=args.burst,
        burst_every=args.burst_every,
        window=args.window,
        resume_limit=args.resume_limit,
        calm=(float(args.calm.split(",")[0]), float(args.calm.split(",")[1])),
        max_messages=args.messages,
        seed=args.seed,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    report = asyncio.run(run_chaos(config))
    print(describe(report))
    if args.json:
        args.json.write_text(json.dumps(report.summary(), indent=2))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
