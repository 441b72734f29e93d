"""Helpers shared by the tests: a real hubbub process, tokens, WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from hubbub.auth import mint_token

SECRET = "test-secret-" + "x" * 32
UNLIMITED = {
    "HUBBUB_SEND_RATE": "0",
    "HUBBUB_MAX_CONNECTIONS_PER_USER": "0",
    "HUBBUB_CONNECT_RATE_PER_IP": "0",
}
"""Limits off: the tests connect from one address and send fast, unless a test sets one."""
NO_PUSH_SERVICE = "http://127.0.0.1:9/--/api/v2/push/send"
"""Where pushes go unless a test sets a stand-in: a port nothing listens on, never Expo."""


async def until(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait (real time, polling) until ``check()`` is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``hubbub run`` in a child process, on a free port, with its own data dir."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            "HUBBUB_DATA_DIR": str(data_dir),
            "HUBBUB_JWT_SECRET": SECRET,
            "HUBBUB_PORT": str(self.port),
            "HUBBUB_LOG_LEVEL": "warning",
            **UNLIMITED,
            "HUBBUB_EXPO_PUSH_URL": NO_PUSH_SERVICE,
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hubbub", "run"], env=self.env, stdout=log, stderr=log
            )
        # Generous: the suite runs in two workers on two cores, under coverage.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


def token(
    user: str, *, name: str | None = None, ttl: float = 3600, now: float | None = None
) -> str:
    return mint_token(SECRET, user, name=name, ttl=ttl, now=now)


def auth(user: str, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, **kw)}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(payload: str, secret: str = SECRET) -> str:
    """An HS256 token over exactly this payload text (numbers no JWT library would write)."""
    signing = b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + b64url(payload.encode())
    mac = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64url(mac)


def forged(alg: Any, claims: dict[str, Any] | None = None, **header: Any) -> str:
    """A token whose header names ``alg``, with a signature that matches no key."""
    body = claims if claims is not None else {"sub": "forger", "exp": int(time.time()) + 600}
    head = {"alg": alg, "typ": "JWT", **header}
    return f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(body).encode())}.AAAA"


def new_id() -> str:
    return uuid.uuid4().hex


class FrameClient:
    """A client speaking hubbub's JSON frames, over whichever transport."""

    opened: ClassVar[list[FrameClient]] = []  # closed by close_opened() after each test

    def __init__(self, hello: dict[str, Any]) -> None:
        self.hello = hello
        self.loop = asyncio.get_running_loop()  # the loop its connection lives on
        self._next = 0
        self._backlog: list[dict[str, Any]] = []  # frames a request() passed over

    async def _write(self, text: str) -> None:
        raise NotImplementedError

    async def _read(self, timeout: float) -> dict[str, Any]:
        raise NotImplementedError

    async def send(self, frame: dict[str, Any]) -> Any:
        self._next += 1
        frame.setdefault("id", self._next)
        await self._write(json.dumps(frame))
        return frame["id"]

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        if self._backlog:
            return self._backlog.pop(0)
        return await self._read(timeout)

    async def recv_type(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        """The next frame of this type; frames of other types stay queued for recv."""
        for i, frame in enumerate(self._backlog):
            if frame["type"] == kind:
                return self._backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            frame = await self._read(max(0.01, deadline - time.monotonic()))
            if frame["type"] == kind:
                return frame
            self._backlog.append(frame)

    async def request(self, frame: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
        """Send a request; return its ack or error (other frames stay queued for recv)."""
        rid = await self.send(frame)
        deadline = time.monotonic() + timeout
        passed: list[dict[str, Any]] = []
        while True:
            reply = await self._read(max(0.01, deadline - time.monotonic()))
            if reply["type"] in ("ack", "error") and reply.get("id") == rid:
                self._backlog += passed
                return reply
            passed.append(reply)

    async def send_message(
        self, conversation_id: str, body: str, client_msg_id: str | None = None
    ) -> dict[str, Any]:
        reply = await self.request(
            {
                "type": "message.send",
                "conversation_id": conversation_id,
                "body": body,
                "client_msg_id": client_msg_id or new_id(),
            }
        )
        assert reply["type"] == "ack", reply
        return dict(reply["message"])

    async def no_frame(self, timeout: float = 0.3, kind: str | None = None) -> None:
        """Assert that nothing (of this type, when given) arrives within ``timeout``."""
        for frame in await self.frames_within(timeout):
            assert kind is not None and frame["type"] != kind, f"unexpected frame: {frame}"

    async def frames_within(self, timeout: float) -> list[dict[str, Any]]:
        """Every frame queued or arriving within ``timeout``, taken from the queue."""
        frames, self._backlog = self._backlog, []
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frames.append(await self._read(remaining))
            except TimeoutError:
                break
        return frames

    async def close(self) -> None:
        raise NotImplementedError


class Client(FrameClient):
    """A WebSocket client."""

    def __init__(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        super().__init__(hello)
        self.ws = ws

    @classmethod
    async def connect(cls, server: ServerProcess, user: str, **kw: Any) -> Client:
        return await cls.connect_url(server.ws_url, user, **kw)

    @classmethod
    async def connect_url(cls, url: str, user: str, tok: str | None = None, **kw: Any) -> Client:
        # No bound on frames waiting to be read: a test that reads few of them
        # must still see the server's close frame when it closes.
        ws = await websockets.connect(f"{url}?token={tok or token(user, **kw)}", max_queue=None)
        hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert hello["type"] == "hello", hello
        client = cls(ws, hello)
        cls.opened.append(client)
        return client

    async def _write(self, text: str) -> None:
        await self.ws.send(text)

    async def _read(self, timeout: float) -> dict[str, Any]:
        return dict(json.loads(await asyncio.wait_for(self.ws.recv(), timeout)))

    async def close(self) -> None:
        await self.ws.close()


class StreamClosed(Exception):
    """The server ended an HTTP stream (``event: close``), or it broke off."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"stream closed: {code} {reason}")
        self.code = code
        self.reason = reason


class SseClient(FrameClient):
    """A client of the HTTP fallback transport: ``GET /sse`` down, ``POST`` up.

    ``post_url`` may name another process than the stream's (no sticky sessions).
    """

    def __init__(self, http: httpx.AsyncClient, tok: str, post_url: str) -> None:
        super().__init__({})
        self.http = http
        self.token = tok
        self.post_url = post_url
        self.keepalives = 0
        self._frames: asyncio.Queue[dict[str, Any] | StreamClosed] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        user: str,
        tok: str | None = None,
        post_to: str | None = None,
        **kw: Any,
    ) -> SseClient:
        tok = tok or token(user, **kw)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))
        client = cls(http, tok, post_to or url)
        request = http.build_request(
            "GET", url + "/sse", headers={"Authorization": "Bearer " + tok}
        )
        response = await http.send(request, stream=True)
        assert response.status_code == 200, (response.status_code, await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream")
        client._reader = asyncio.create_task(client._read_stream(response))
        hello = await client._read(5)
        assert hello["type"] == "hello", hello
        client.hello = hello
        cls.opened.append(client)
        return client

    async def _read_stream(self, response: httpx.Response) -> None:
        event, data = "message", ""
        end = StreamClosed(None, "the stream broke off")
        try:
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    self.keepalives += 1
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and data:
                    if event == "close":
                        closing = json.loads(data)
                        end = StreamClosed(closing["code"], closing["reason"])
                    else:
                        self._frames.put_nowait(json.loads(data))
                    event, data = "message", ""
        except httpx.HTTPError:
            pass
        finally:
            self._frames.put_nowait(end)
            await response.aclose()

    async def _read(self, timeout: float) -> dict[str, Any]:
        item = await asyncio.wait_for(self._frames.get(), timeout)
        if isinstance(item, StreamClosed):
            self._frames.put_nowait(item)  # every later read sees the end too
            raise item
        return item

    async def post(self, body: bytes, tok: str | None = None) -> httpx.Response:
        return await self.http.post(
            f"{self.post_url}/sse/{self.hello['connection_id']}",
            content=body,
            headers={"Authorization": "Bearer " + (tok or self.token)},
        )

    async def _write(self, text: str) -> None:
        response = await self.post(text.encode())
        assert response.status_code == 202, response.text

    async def closed(self, timeout: float = 5) -> StreamClosed:
        """Read on until the stream ends; return how it ended."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                await self._read(max(0.01, deadline - time.monotonic()))
        except StreamClosed as end:
            return end

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.http.aclose()


def create_group(server: ServerProcess, owner: str, members: list[str], title: str = "g") -> str:
    r = httpx.post(
        server.url + "/api/v1/conversations",
        headers=auth(owner),
        json={"kind": "group", "title": title, "members": members},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["conversation"]["id"])


def open_direct(server: ServerProcess, user: str, other: str) -> str:
    r = httpx.post(
        server.url + "/api/v1/conversations",
        headers=auth(user),
        json={"kind": "direct", "members": [other]},
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["conversation"]["id"])


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame (masked, as clients must) of up to 64 KiB."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A bare WebSocket client that answers nothing on its own (no pongs)."""

    opened: ClassVar[list[RawClient]] = []  # closed by close_opened() after each test

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, port: int, user: str, rcvbuf: int | None = None) -> RawClient:
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(
            (
                f"GET /ws?token={token(user)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        client = cls(reader, writer)
        cls.opened.append(client)
        return client

    @staticmethod
    async def connect_raw(port: int, request: str) -> bytes:
        """Send a hand-written handshake; return the head of the server's answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request.encode())
            return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        finally:
            writer.close()

    async def frame(self, timeout: float = 5) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server (never masked)."""
        head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return opcode, await asyncio.wait_for(self.reader.readexactly(length), timeout)

    async def send_text(self, text: str) -> None:
        """One masked text frame (clients must mask)."""
        self.writer.write(masked_frame(0x1, text.encode()))
        await self.writer.drain()

    async def close_code(self, timeout: float = 5) -> int:
        """Read until the server's close frame; return its code."""
        while True:
            opcode, payload = await self.frame(timeout)
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def close_opened() -> None:
    """Close every client still open, each on the loop it was opened on.

    Called between a test and its fixtures' teardown, while no loop runs: a
    server stopped with clients still connected would wait out its close grace
    for peers that cannot answer.
    """
    clients: list[FrameClient | RawClient] = [
        *reversed(FrameClient.opened),
        *reversed(RawClient.opened),
    ]
    FrameClient.opened.clear()
    RawClient.opened.clear()
    failure: BaseException | None = None
    for client in clients:
        if client.loop.is_closed():
            continue
        try:
            client.loop.run_until_complete(client.close())
        except Exception as exc:  # close the others all the same
            failure = failure or exc
    if failure is not None:
        raise failure
