"""Presence subscriptions: which connections of this process watch which users.

A connection subscribes (the ``presence`` command) to at most ``limit``
users, typically those it shows; each change of a watched user's status is
then written to it, whichever process that user connected to. The index is
this process's alone: a connection's subscriptions end with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from hubbub.errors import TooLarge


class TooManyWatched(TooLarge):
    """A ``presence`` command would take a connection past its subscription bound."""

    code = "too_many_subscriptions"


class Watcher(Protocol):
    """A connection that subscribes: where its presence events go."""

    user_id: str
    connection_id: str
    attached: bool

    def send(self, payload: bytes) -> None: ...


Sink = Callable[[bytes], None]


class Watches:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        # watched user -> connection id -> (the watching user, where to write)
        self._by_user: dict[str, dict[str, tuple[str, Sink]]] = {}
        self._by_connection: dict[str, set[str]] = {}

    def of(self, connection_id: str) -> set[str]:
        """The users a connection watches (a copy)."""
        return set(self._by_connection.get(connection_id, ()))

    def check(self, connection_id: str, add: Iterable[str], remove: Iterable[str]) -> None:
        """Raise ``TooManyWatched`` if adding and removing these would pass the bound."""
        after = self.of(connection_id).difference(remove).union(add)
        if len(after) > self.limit:
            raise TooManyWatched(
                f"a connection may subscribe to the presence of at most {self.limit} users"
                f" ({len(after)} asked); unsubscribe from some first"
            )

    def add(self, watcher: Watcher, users: Iterable[str]) -> None:
        cid = watcher.connection_id
        mine = self._by_connection.setdefault(cid, set())
        entry = (watcher.user_id, watcher.send)
        by_user = self._by_user
        for user in users:
            mine.add(user)
            by_user.setdefault(user, {})[cid] = entry

    def remove(self, connection_id: str, users: Iterable[str]) -> None:
        mine = self._by_connection.get(connection_id)
        if mine is None:
            return
        for user in users:
            if user in mine:
                mine.discard(user)
                watching = self._by_user.get(user)
                if watching is not None:
                    watching.pop(connection_id, None)
                    if not watching:
                        del self._by_user[user]
        if not mine:
            del self._by_connection[connection_id]

    def drop(self, connection_id: str) -> None:
        """A connection closed: its subscriptions end."""
        self.remove(connection_id, self.of(connection_id))

    def watched(self, user: str) -> bool:
        return user in self._by_user

    def watchers(self, user: str) -> list[tuple[str, Sink]]:
        """``(watching user, sink)`` of each connection here that watches ``user``."""
        return list(self._by_user.get(user, {}).values())
