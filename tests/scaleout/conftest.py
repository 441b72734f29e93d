"""Clusters of real hubbub processes on one PostgreSQL database and one Redis."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import REDIS_URL, fresh_postgres_sync, need
from tests.support import ServerProcess, free_port


class Cluster:
    def __init__(self, root: Path, database_url: str, redis_url: str, size: int) -> None:
        prefix = f"hubbub:test:{uuid.uuid4().hex[:10]}:"
        self.nodes = [
            ServerProcess(
                root / f"node{i}",
                HUBBUB_DATABASE_URL=database_url,
                HUBBUB_REDIS_URL=redis_url,
                HUBBUB_REDIS_PREFIX=prefix,
                HUBBUB_PRESENCE_TTL="1.5",
                HUBBUB_PRESENCE_GRACE="0.2",
            )
            for i in range(size)
        ]

    def start(self) -> Cluster:
        self.nodes[0].start()  # migrates first; the others find the schema ready
        for node in self.nodes[1:]:
            node.start()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three hubbub processes on a fresh PostgreSQL database and the machine's Redis."""
    need(REDIS_URL, 6379, "Redis")
    with fresh_postgres_sync() as database_url:
        made = Cluster(tmp_path, database_url, REDIS_URL, 3).start()
        yield made
        made.stop()


class PrivateRedis:
    """A redis-server of the test's own, on another port, to stop and start at will."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def cluster_on_private_redis(tmp_path: Path, private_redis: PrivateRedis) -> Iterator[Cluster]:
    with fresh_postgres_sync() as database_url:
        made = Cluster(tmp_path, database_url, private_redis.url, 3).start()
        yield made
        made.stop()
