"""Presence of the single-process default: this process is everyone."""

from __future__ import annotations

from hubbub.presence.base import Expired, Status


class MemoryPresence:
    def __init__(self) -> None:
        self._online: set[str] = set()
        self._status: list[Status] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def came_online(self, user: str) -> bool:
        if user in self._online:
            return False
        self._online.add(user)
        return True

    async def went_offline(self, user: str) -> bool:
        if user not in self._online:
            return False
        self._online.discard(user)
        return True

    async def online(self, users: list[str]) -> set[str]:
        return self._online.intersection(users)

    def on_expired(self, callback: Expired) -> None:
        return None  # this process cannot outlive itself

    def publish(self, user: str, status: str, at_ms: int) -> None:
        for callback in self._status:
            callback(user, status, at_ms)

    def on_status(self, callback: Status) -> None:
        self._status.append(callback)
