"""The push provider port.

A provider takes a batch of composed pushes, each for one device, and says
per push what became of it (``Outcome``): sent, to be retried (when the
provider said how long to wait, after that), failed for good, or the device
is gone (the token no longer exists: hubbub forgets the device). Expo also
answers later, through receipts, for tickets it accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import msgspec

from hubbub.models import Device

Result = Literal["sent", "retry", "failed", "gone"]


class Notice(msgspec.Struct, kw_only=True):
    """What a push shows, composed once for all of a recipient's devices."""

    title: str
    body: str
    badge: int
    collapse_id: str
    """One per recipient and conversation: a newer push replaces the older one."""
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Push:
    id: str
    """Stable across retries: the provider's idempotency key."""
    user_id: str
    device: Device
    notice: Notice
    expires_at: int
    """Seconds since the epoch after which it should not be shown (its message's age)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    detail: str = ""
    retry_after: float | None = None
    """Seconds the provider asked to wait (Retry-After), for ``retry``."""
    ticket: str | None = None
    """A receipt to check later (Expo)."""


SENT = Outcome("sent")


@dataclass(frozen=True, slots=True)
class Receipt:
    ticket: str
    outcome: Outcome


class Provider(Protocol):
    name: str
    batch: int
    """Pushes per ``send`` call."""

    async def send(self, pushes: list[Push]) -> list[Outcome]:
        """Hand the pushes over; one outcome each, in order. Never raises for the network."""

    async def receipts(self, tickets: list[str]) -> list[Receipt]:
        """What became of earlier tickets; those not yet known are left out."""

    async def close(self) -> None: ...


REQUEST_DEADLINE = 20.0
"""Seconds one request to a provider may take in all (httpx's timeouts are per phase)."""


def transient(status: int) -> bool:
    """An HTTP status worth retrying: a timeout, throttling or the provider's own trouble."""
    return status in (408, 429) or status >= 500


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, at most a day; an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(seconds, 86_400.0) if seconds >= 0 else None
