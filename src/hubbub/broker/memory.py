"""The in-process broker of the single-process default."""

from __future__ import annotations

from collections.abc import Callable

from hubbub.broker.base import Delivery, Handler, Relayed, RelayHandler
from hubbub.ids import new_id


class MemoryBroker:
    healthy = True

    def __init__(self) -> None:
        self.origin = new_id("p")
        self._handlers: list[Handler] = []

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
