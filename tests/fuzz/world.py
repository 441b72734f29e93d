"""What the fuzz tests aim at: real conversations, messages and uploads of a few users.

A near-valid frame or request names these ids (``hostile.Ref``), so it gets
past the parser into the handlers and the database; and the server's health
after the run (its log, its memory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.support import ServerProcess, auth, create_group, new_id, token

PNG = b"\x89PNG\r\n\x1a\n" + b"p" * 64


def post_message(server: ServerProcess, user: str, cid: str, body: str) -> str:
    r = httpx.post(
        f"{server.url}/api/v1/conversations/{cid}/messages",
        headers=auth(user),
        json={"body": body, "client_msg_id": new_id()},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["message"]["id"])


def upload(server: ServerProcess, user: str) -> str:
    r = httpx.post(
        f"{server.url}/api/v1/uploads",
        headers=auth(user),
        files={"file": ("f.png", PNG, "image/png")},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["upload"]["id"])


def contexts(server: ServerProcess, users: list[str]) -> list[dict[str, Any]]:
    """For each user: its own group (with a peer who never connects), a quiet
    group nothing is sent to, two messages and an upload; and an outsider's."""
    outsider = "fz-outsider-" + new_id()[:6]
    foreign_cid = create_group(server, outsider, ["fz-peer"], "foreign")
    foreign = {
        "foreign_cid": foreign_cid,
        "foreign_mid": post_message(server, outsider, foreign_cid, "not yours"),
        "foreign_upload": upload(server, outsider),
        "room": create_room(server, outsider),
    }
    found = []
    for user in users:
        cid = create_group(server, user, ["fz-peer"], "fuzz")
        found.append(
            {
                **foreign,
                "user": user,
                "cid": cid,
                "quiet_cid": create_group(server, user, ["fz-peer"], "quiet"),
                "mid": post_message(server, user, cid, "first"),
                "mid2": post_message(server, user, cid, "second"),
                "upload": upload(server, user),
                "token": token(user),
                "other_token": token(outsider),
                "expired_token": token(user, ttl=-60),
            }
        )
    return found


def create_room(server: ServerProcess, owner: str) -> str:
    r = httpx.post(
        server.url + "/api/v1/conversations",
        headers=auth(owner),
        json={"kind": "room", "title": "lobby", "members": []},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["conversation"]["id"])


def rss_bytes(server: ServerProcess) -> int:
    """The server process's resident set (VmRSS)."""
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


MEMORY_BOUND = 64 * 1024 * 1024
"""Growth allowed over a run: the data kept (SQLite's page cache, up to a few
MiB; the rate limiter's and sessions' small per-user state; the messages a run
stores are on disk, not in memory), plus the allocator's high-water mark after
megabyte frames, plus coverage's data when measured. A leak of even a few
hundred bytes per frame crosses it at the long run's counts."""


def assert_healthy(server: ServerProcess, rss_before: int) -> int:
    """The server runs, logged no traceback, and grew less than MEMORY_BOUND."""
    assert server.proc is not None and server.proc.poll() is None, "the server exited"
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-20_000:]
    grown = rss_bytes(server) - rss_before
    assert grown < MEMORY_BOUND, f"server memory grew by {grown / 2**20:.1f} MiB"
    return grown
