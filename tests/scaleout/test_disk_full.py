"""A full disk under the data directory: every send answered, nothing acked lost, recovery.

The data directory is a small tmpfs of the test's own (mounting needs root:
elsewhere the test skips, and with HUBBUB_REQUIRE_SERVICES=1 it fails).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.scaleout.conftest import unavailable
from tests.support import Client, ServerProcess, auth, new_id

SIZE = "6m"
BODY = "x" * 2000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs for the disk-full test: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """A file taking all but ``leave`` bytes of the disk."""
    filler = disk / "filler"
    with open(filler, "wb") as out:
        chunk = b"\0" * 65536
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError:
            pass
    filler.unlink()
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as out:
        out.write(b"\0" * max(0, free - leave))
    return filler


async def send_until_refused(
    client: Client, cid: str, limit: int = 2000
) -> tuple[int, dict[str, Any]]:
    """Send until the server refuses; every send must be answered within 10 s."""
    for n in range(limit):
        started = time.monotonic()
        reply = await client.request(
            {
                "type": "message.send",
                "conversation_id": cid,
                "body": f"{n} {BODY}",
                "client_msg_id": f"full-{n}",
            },
            timeout=10,
        )
        assert time.monotonic() - started < 10
        if reply["type"] != "ack":
            return n, reply
    raise AssertionError("the disk never filled")


async def test_a_full_disk_refuses_sends_and_uploads_then_recovers(small_disk: Path) -> None:
    server = ServerProcess(small_disk / "data").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            made = await http.post(
                "/api/v1/conversations",
                headers=auth("ann"),
                json={"kind": "direct", "members": ["bob"]},
            )
            cid = made.json()["conversation"]["id"]
            ann = await Client.connect(server, "ann")
            filler = fill(small_disk, leave=400_000)
            acked, refusal = await send_until_refused(ann, cid)
            assert acked > 0
            assert refusal["type"] == "error" and refusal["code"] == "unavailable", refusal
            # The next sends are answered too, and the process is still serving
            # (as large as the refused one: a short one may fit in a page's room).
            again = await ann.request(
                {
                    "type": "message.send",
                    "conversation_id": cid,
                    "body": f"more {BODY}",
                    "client_msg_id": new_id(),
                },
                timeout=10,
            )
            assert again["type"] == "error" and again["code"] == "unavailable"
            health = await http.get("/health")
            assert health.status_code == 503 and health.json()["database"].startswith("error")
            upload = await http.post(
                "/api/v1/uploads",
                headers=auth("ann"),
                files={"file": ("big.txt", b"z" * 600_000, "text/plain")},
            )
            assert upload.status_code == 503
            assert upload.json()["error"]["code"] == "unavailable"

            filler.unlink()  # space is back
            deadline = time.monotonic() + 30
            while (await http.get("/health")).status_code != 200:
                assert time.monotonic() < deadline, "health never recovered"
                await asyncio.sleep(0.5)
            after = await ann.send_message(cid, "after the disk was freed", f"full-{acked}")
            assert after["body"] == "after the disk was freed"
            await ann.close()
        server.stop()
        server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            page = await http.get(
                f"/api/v1/conversations/{cid}/messages",
                headers=auth("bob"),
                params={"after": 0, "limit": 100},
            )
            bodies = [m["body"] for m in page.json()["messages"]]
            while page.json()["has_more"]:
                last = page.json()["messages"][-1]["seq"]
                page = await http.get(
                    f"/api/v1/conversations/{cid}/messages",
                    headers=auth("bob"),
                    params={"after": last, "limit": 100},
                )
                bodies += [m["body"] for m in page.json()["messages"]]
        # Every acked message is there, once, in order, and the refused ones are not.
        assert bodies == [f"{n} {BODY}" for n in range(acked)] + ["after the disk was freed"]
    finally:
        server.stop()
