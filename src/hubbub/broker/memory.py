"""The in-process broker of the single-process default."""

from __future__ import annotations

from collections.abc import Callable

from hubbub.broker.base import Delivery, Handler, Relayed, RelayHandler
from hubbub.broker.routing import Channels, Interest
from hubbub.ids import new_id


class MemoryBroker:
    healthy = True
    routed = False
    """Every event is this process's: interest is counted, and decides nothing."""

    def __init__(self) -> None:
        self.origin = new_id("p")
        self._handlers: list[Handler] = []
        self.interest = Interest(Channels("memory"), linger=0.0)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._handlers.clear()

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def publish(self, delivery: Delivery) -> None:
        for handler in self._handlers:
            handler(delivery)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        return None  # never disconnected

    async def relay(self, node: str, message: Relayed) -> bool:
        return False  # the only process

    def on_relay(self, handler: RelayHandler) -> None:
        return None  # nothing is relayed to the only process

    def watch(self, conversation_id: str) -> None:
        self.interest.watch(conversation_id)

    def unwatch(self, conversation_id: str) -> None:
        self.interest.unwatch(conversation_id)

    def watch_user(self, user_id: str) -> None:
        self.interest.watch_user(user_id)

    def unwatch_user(self, user_id: str) -> None:
        self.interest.unwatch_user(user_id)

    async def watched(self, conversation_id: str) -> bool:
        return True  # every event is delivered here as it is published

    async def settled(self) -> bool:
        return True

    def watching(self, conversation_id: str) -> bool:
        return conversation_id in self.interest.conversations
