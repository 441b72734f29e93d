"""Local HTTP servers standing in for Expo's push API and for an app's webhook,
and the calls push tests make on a server.

Each is a real HTTP server on 127.0.0.1 (a thread of the test process)
speaking the documented protocol: Expo's send endpoint answers one ticket per
message and its receipts endpoint the tickets' receipts; the webhook checks
each request's signature as docs/push.md tells a receiver to. A test scripts
failures (``fail``: the next N requests answer a status) and gone tokens, and
reads what arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.support import ServerProcess, auth, new_id

SEND_PATH = "/--/api/v2/push/send"
RECEIPTS_PATH = "/--/api/v2/push/getReceipts"
WEBHOOK_SECRET = "webhook-secret-for-tests"


class Stub:
    """What a stand-in received, and the failures it is told to answer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        """Every request: path, headers, parsed body, and the status answered."""
        self.delivered: list[dict[str, Any]] = []
        """Pushes accepted (answered as sent): Expo messages or webhook bodies."""
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.gone: set[str] = set()
        """Tokens answered as no longer registered."""
        self.gone_in_receipts: set[str] = set()
        """Tokens whose tickets are ok but whose receipts say DeviceNotRegistered."""
        self.throttled_in_receipts: set[str] = set()
        """Tokens whose next receipt says MessageRateExceeded (once each)."""
        self.projects: dict[str, str] = {}
        """Token -> Expo project; a request mixing projects is refused as Expo does."""
        self.tickets: dict[str, str] = {}  # ticket id -> token
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, times: int, status: int, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status``."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self.lock:
            self.failures.extend([(status, headers)] * times)

    def take_failure(self) -> tuple[int, dict[str, str]] | None:
        with self.lock:
            return self.failures.pop(0) if self.failures else None

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.delivered) >= count:
                    return list(self.delivered)
            time.sleep(0.02)
        with self.lock:
            return list(self.delivered)


def _handler(stub: Stub, answer: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = json.loads(raw) if raw else None
            status, headers, reply = answer(self, raw, body)
            with stub.lock:
                stub.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "status": status,
                    }
                )
            data = json.dumps(reply).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def _serving(stub: Stub, answer: Any) -> Iterator[Stub]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub, answer))
    stub.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def expo() -> Iterator[Stub]:
    """Expo's push API: ``stub.url + SEND_PATH`` is the send endpoint."""
    stub = Stub()
    count = iter(range(1, 1 << 30))

    def answer(handler: BaseHTTPRequestHandler, raw: bytes, body: Any) -> tuple[int, Any, Any]:
        failure = stub.take_failure()
        if failure is not None:
            status, headers = failure
            code = "TOO_MANY_REQUESTS" if status == 429 else "INTERNAL_SERVER_ERROR"
            return status, headers, {"errors": [{"code": code, "message": "scripted"}]}
        if handler.path == RECEIPTS_PATH:
            data: dict[str, Any] = {}
            for tid in body["ids"]:
                token = stub.tickets.get(tid)
                if token is None:
                    continue
                if token in stub.gone_in_receipts:
                    error = "DeviceNotRegistered"
                elif token in stub.throttled_in_receipts:
                    stub.throttled_in_receipts.discard(token)
                    error = "MessageRateExceeded"
                else:
                    data[tid] = {"status": "ok"}
                    continue
                data[tid] = {"status": "error", "message": error, "details": {"error": error}}
            return 200, {}, {"data": data}
        if handler.path != SEND_PATH or not isinstance(body, list) or len(body) > 100:
            return 400, {}, {"errors": [{"code": "VALIDATION_ERROR", "message": "bad request"}]}
        projects: dict[str, list[str]] = {}
        for message in body:
            project = stub.projects.get(message["to"], "@test/default")
            projects.setdefault(project, []).append(message["to"])
        if len(projects) > 1:
            mixed = {
                "code": "PUSH_TOO_MANY_EXPERIENCE_IDS",
                "message": "All push notification messages in the same request must be for "
                "the same project; separate your push notifications by project.",
                "details": projects,
            }
            return 400, {}, {"errors": [mixed]}
        tickets = []
        for message in body:
            if message["to"] in stub.gone:
                tickets.append(
                    {
                        "status": "error",
                        "message": f"{message['to']} is not a registered recipient",
                        "details": {"error": "DeviceNotRegistered", "expoPushToken": message["to"]},
                    }
                )
                continue
            tid = f"ticket-{next(count)}"
            with stub.lock:
                stub.tickets[tid] = message["to"]
                stub.delivered.append(message)
            tickets.append({"status": "ok", "id": tid})
        return 200, {}, {"data": tickets}

    with _serving(stub, answer):
        yield stub


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """The recipe of docs/push.md, written out as a receiver would."""
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest("v1=" + expected.hexdigest(), signature)


@contextmanager
def webhook(secret: str = WEBHOOK_SECRET) -> Iterator[Stub]:
    """An app's webhook: refuses (401) a request whose signature does not verify."""
    stub = Stub()

    def answer(handler: BaseHTTPRequestHandler, raw: bytes, body: Any) -> tuple[int, Any, Any]:
        timestamp = handler.headers.get("Hubbub-Timestamp", "")
        signature = handler.headers.get("Hubbub-Signature", "")
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 300
        if not fresh or not verify(secret, timestamp, raw, signature):
            return 401, {}, {"error": "bad signature"}
        failure = stub.take_failure()
        if failure is not None:
            return failure[0], failure[1], {}
        if body["device"]["token"] in stub.gone:
            return 410, {}, {}
        with stub.lock:
            stub.delivered.append(body)
        return 200, {}, {}

    with _serving(stub, answer):
        yield stub


# Calls of the tests on a server with push: a device, and a message to push.


def expo_token(name: str) -> str:
    return f"ExponentPushToken[{name}-{new_id()}]"


def register(
    server: ServerProcess,
    user: str,
    token: str,
    provider: str = "expo",
    app_id: str | None = None,
) -> str:
    """Register a device of ``user``'s; its id."""
    body = {"provider": provider, "token": token, "platform": "ios"}
    if app_id is not None:
        body["app_id"] = app_id
    r = httpx.post(server.url + "/api/v1/push/devices", headers=auth(user), json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["device"]["id"])


def send(server: ServerProcess, user: str, cid: str, body: str, **extra: Any) -> dict[str, Any]:
    """Post a message over REST; the stored message."""
    r = httpx.post(
        f"{server.url}/api/v1/conversations/{cid}/messages",
        headers=auth(user),
        json={"body": body, "client_msg_id": new_id(), **extra},
    )
    assert r.status_code in (200, 201), r.text
    return dict(r.json()["message"])
