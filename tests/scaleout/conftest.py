"""Clusters of real hubbub processes on one PostgreSQL database and one Redis."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

import pytest

from tests.services import REDIS_URL, REQUIRED, fresh_postgres_sync, need
from tests.support import ServerProcess, free_port


class Cluster:
    def __init__(
        self, root: Path, database_url: str, redis_url: str, size: int, **env: str
    ) -> None:
        prefix = f"hubbub:test:{uuid.uuid4().hex[:10]}:"
        settings = {
            "HUBBUB_DATABASE_URL": database_url,
            "HUBBUB_REDIS_URL": redis_url,
            "HUBBUB_REDIS_PREFIX": prefix,
            "HUBBUB_PRESENCE_TTL": "1.5",
            "HUBBUB_PRESENCE_GRACE": "0.2",
            **env,
        }
        self.nodes = [ServerProcess(root / f"node{i}", **settings) for i in range(size)]

    def start(self) -> Cluster:
        try:
            self.nodes[0].start()  # migrates first; the others find the schema ready
            _each(ServerProcess.start, self.nodes[1:])
        except BaseException:
            self.stop()  # none of them outlives a cluster that did not start
            raise
        return self

    def stop(self) -> None:
        _each(ServerProcess.stop, self.nodes)


def _each(step: Callable[[ServerProcess], object], nodes: list[ServerProcess]) -> None:
    """Run ``step`` on every node at once; raise the first failure after all have ended."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        futures = [pool.submit(step, node) for node in nodes]
    for future in futures:
        future.result()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three hubbub processes on a fresh PostgreSQL database and the machine's Redis."""
    need(REDIS_URL, 6379, "Redis")
    with fresh_postgres_sync() as database_url:
        made = Cluster(tmp_path, database_url, REDIS_URL, 3).start()
        yield made
        made.stop()


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def unavailable(what: str) -> NoReturn:
    """Skip (or, with HUBBUB_REQUIRE_SERVICES=1, fail) a test that cannot run here."""
    if REQUIRED:
        pytest.fail(f"{what} (HUBBUB_REQUIRE_SERVICES=1)")
    pytest.skip(what)


class PrivatePostgres:
    """A PostgreSQL server of the test's own, to stop (even ``-m immediate``) and start.

    Made with the machine's ``initdb`` in a directory of its own, listening on
    127.0.0.1 on a free port, with ``fsync`` off (an immediate shutdown is a
    crash of the server, not of the machine, so nothing committed is lost).
    PostgreSQL refuses to run as root: as root it runs as the ``postgres`` user.
    """

    def __init__(self) -> None:
        found = shutil.which("pg_ctl") or next(
            iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)), None
        )
        if found is None:
            unavailable("PostgreSQL's server programs (pg_ctl, initdb) are not installed")
        self.bin = Path(str(found)).parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hubbub-pg-"))
        self.data = self.root / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                unavailable("as root, a private PostgreSQL needs runuser and a postgres user")
            shutil.chown(self.root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / program), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.destroy()


class PrivateRedis:
    """A redis-server of the test's own, on another port, to stop and start at will."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
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
        if not wait_for_port(self.port, 10):
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
