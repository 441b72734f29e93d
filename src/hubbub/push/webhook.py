"""A webhook: each push is POSTed, signed, to the app's own backend (docs/push.md).

The body is JSON (``body``). ``Hubbub-Signature`` is ``v1=`` and the hex
HMAC-SHA256, keyed with the webhook secret, of ``<Hubbub-Timestamp>.<body>``;
``Hubbub-Push-Id`` is the same on every retry of a push, so the receiver can
drop a repeat. 2xx: sent; 410: the device is gone; 408, 429, 5xx and network
errors are retried (after Retry-After when given); any other status fails
(redirects are not followed).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import httpx
import msgspec

from hubbub.push.base import (
    REQUEST_DEADLINE,
    SENT,
    Outcome,
    Push,
    Receipt,
    retry_after,
    transient,
)

BATCH = 50
"""Requests under way at once."""
TIMEOUT = 10.0
MAX_TOKEN = 4096
_encoder = msgspec.json.Encoder()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """The receiver's check (a timestamp too far from now is the receiver's to refuse)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def body(push: Push, sent_at: int) -> dict[str, Any]:
    device, notice = push.device, push.notice
    return {
        "id": push.id,
        "user_id": push.user_id,
        "device": {
            "id": device.id,
            "token": device.token,
            "platform": device.platform,
            "app_id": device.app_id,
        },
        "notification": {
            "title": notice.title,
            "body": notice.body,
            "badge": notice.badge,
            "collapse_id": notice.collapse_id,
        },
        "data": notice.data,
        "sent_at": sent_at,
        "expires_at": push.expires_at,
    }


class WebhookProvider:
    name = "webhook"
    batch = BATCH

    def __init__(
        self, url: str, secret: str, timeout: float = TIMEOUT, deadline: float = REQUEST_DEADLINE
    ) -> None:
        self.url = url
        self.secret = secret
        self.deadline = deadline
        self._http = httpx.AsyncClient(timeout=min(timeout, deadline))

    async def send(self, pushes: list[Push]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._one(p) for p in pushes)))

    async def _one(self, push: Push) -> Outcome:
        timestamp = str(int(time.time()))  # wall clock: the receiver compares with its own
        payload = _encoder.encode(body(push, int(timestamp)))
        headers = {
            "Content-Type": "application/json",
            "Hubbub-Push-Id": push.id,
            "Hubbub-Timestamp": timestamp,
            "Hubbub-Signature": sign(self.secret, timestamp, payload),
        }
        try:
            response = await asyncio.wait_for(
                self._http.post(self.url, content=payload, headers=headers), self.deadline
            )
        except (httpx.HTTPError, TimeoutError) as exc:
            return Outcome("retry", f"webhook unreachable: {exc!r}")
        status = response.status_code
        if 200 <= status < 300:
            return SENT
        detail = f"webhook answered {status}"
        if status == 410:
            return Outcome("gone", detail)
        if transient(status):
            return Outcome("retry", detail, retry_after(response.headers.get("retry-after")))
        return Outcome("failed", detail)

    async def receipts(self, tickets: list[str]) -> list[Receipt]:
        return []

    async def close(self) -> None:
        await self._http.aclose()
