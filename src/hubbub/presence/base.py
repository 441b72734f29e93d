"""The presence port.

A process reports the users it serves (first local connection opened, last
one closed); the port answers whether that made them online or offline across
every process, and tells a process about users whose serving process died.
It also carries each announced change to every process (``publish`` and
``on_status``), for the connections there that subscribed to that user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Expired = Callable[[list[str]], None]
Status = Callable[[str, str, int], None]
"""``(user, "online" or "offline", when in ms)``."""


class Presence(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def came_online(self, user: str) -> bool:
        """This process now serves ``user``; True if no process did before."""

    async def went_offline(self, user: str) -> bool:
        """This process no longer serves ``user``; True if no process does now."""

    async def online(self, users: list[str]) -> set[str]:
        """Which of these users some live process serves."""

    def on_expired(self, callback: Expired) -> None:
        """Call ``callback`` with users left offline by a process that died."""

    def publish(self, user: str, status: str, at_ms: int) -> None:
        """Tell every process that ``user`` is now ``status``: this one at once."""

    def on_status(self, callback: Status) -> None:
        """Call ``callback`` with each status any process publishes, its own included."""
