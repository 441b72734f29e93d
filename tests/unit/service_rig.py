"""The service layer in-process: real services over a SQLite store and the memory broker.

Every test of tests/unit/test_*_service.py and test_fanout.py builds its
services here (``build_services`` is the one place that knows their
constructors) and reads what was published from ``Rig.deliveries``, captured
by subscribing to the ``MemoryBroker`` as the gateway's hub does.

Only the Store port and the services' public methods are used, never a
store's internals, so a rewrite of ``hubbub/store`` keeps these tests valid.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec

from hubbub.broker.base import Delivery
from hubbub.broker.memory import MemoryBroker
from hubbub.clock import ManualClock
from hubbub.config import UPLOAD_TYPES, Limits
from hubbub.models import Conversation, Message, SendItem, Upload
from hubbub.service.chat import ChatService
from hubbub.service.conversations import ConversationService
from hubbub.service.fanout import Fanout
from hubbub.service.presence import PresenceService
from hubbub.service.uploads import UploadService
from hubbub.store.base import Store
from hubbub.store.sqlite import SQLiteStore

START = 1_700_000_000.0
UPLOAD_MAX = 1024


Hook = Callable[[], Awaitable[None]]


class Hooked:
    """A Store (through its port only) that runs a hook once around a named call.

    Lets a test put another process's change between what a service reads and
    what it writes, deterministically.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._before: dict[str, Hook] = {}
        self._after: dict[str, Hook] = {}
        self.calls: list[str] = []

    def before(self, method: str, hook: Hook) -> None:
        self._before[method] = hook

    def after(self, method: str, hook: Hook) -> None:
        self._after[method] = hook

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            hook = self._before.pop(name, None)
            if hook is not None:
                await hook()
            result = await target(*args, **kwargs)
            hook = self._after.pop(name, None)
            if hook is not None:
                await hook()
            return result

        return call


@dataclass(frozen=True)
class Services:
    """One process's services (what ``server.Hubbub`` builds), over a given store."""

    fanout: Fanout
    chat: ChatService
    conversations: ConversationService
    presence: PresenceService


def build_services(
    store: Store, broker: MemoryBroker, clock: ManualClock, limits: Limits, *, shared: bool
) -> Services:
    """The single place that knows the services' constructors.

    ``ChatService`` takes its ``PresenceService`` either as a constructor
    argument (``presence=``) or, in older code, as an attribute set after
    construction; both are accepted.
    """
    fanout = Fanout(store, broker, shared=shared)
    presence = PresenceService(store, fanout, clock)
    conversations = ConversationService(store, fanout, clock, limits)
    takes_presence = "presence" in inspect.signature(ChatService).parameters
    extra: dict[str, Any] = {"presence": presence} if takes_presence else {}
    chat = ChatService(store, fanout, clock, limits, **extra)
    if not takes_presence:
        chat.presence = presence
    return Services(fanout, chat, conversations, presence)


@dataclass
class Rig:
    clock: ManualClock
    store: Store
    """The database; the main process's services reach it through ``hooked``."""
    hooked: Hooked
    broker: MemoryBroker
    limits: Limits
    services: Services
    uploads: UploadService
    shared: bool
    deliveries: list[Delivery] = field(default_factory=list)
    _others: list[Services] = field(default_factory=list)

    @property
    def fanout(self) -> Fanout:
        return self.services.fanout

    @property
    def chat(self) -> ChatService:
        return self.services.chat

    @property
    def conversations(self) -> ConversationService:
        return self.services.conversations

    @property
    def presence(self) -> PresenceService:
        return self.services.presence

    def capture(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)

    def process(self) -> Services:
        """Another process's services over the same database and broker."""
        other = build_services(self.store, self.broker, self.clock, self.limits, shared=self.shared)
        self._others.append(other)
        return other

    # What was published ---------------------------------------------------

    def clear(self) -> None:
        self.deliveries.clear()

    def published(self) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
        """Every delivery as ``(recipients, decoded frame)``, in publication order."""
        return [(d.recipients, decode(d)) for d in self.deliveries]

    def frames(self, user: str) -> list[dict[str, Any]]:
        """The frames ``user`` was among the recipients of, in publication order."""
        return [decode(d) for d in self.deliveries if user in d.recipients]

    def types(self, user: str) -> list[str]:
        return [f["type"] for f in self.frames(user)]

    def stream(self, user: str, cid: str) -> list[tuple[int, str]]:
        """``(seq, type)`` of the stream events of ``cid`` that went to ``user``."""
        return [
            (d.seq, decode(d)["type"])
            for d in self.deliveries
            if d.conversation_id == cid and d.seq > 0 and user in d.recipients
        ]

    def of_type(self, type_: str) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
        return [(r, f) for r, f in self.published() if f["type"] == type_]

    # Shortcuts ------------------------------------------------------------

    async def direct(self, a: str, b: str) -> Conversation:
        conversation, _created = await self.conversations.open_direct(a, b)
        return conversation

    async def group(self, owner: str, *members: str, title: str = "team") -> Conversation:
        return await self.conversations.create(owner, "group", title, list(members))

    async def room(self, owner: str, *members: str, title: str = "lobby") -> Conversation:
        return await self.conversations.create(owner, "room", title, list(members))

    async def say(self, user: str, cid: str, body: str, cmid: str | None = None) -> Message:
        message, created = await self.chat.send_one(user, SendItem(cid, body, cmid or body))
        assert created
        return message

    async def upload(
        self, owner: str, data: bytes = b"png!", ctype: str = "image/png", name: str = "a.png"
    ) -> Upload:
        return await self.uploads.save(owner, name, ctype, chunks(data))


def decode(delivery: Delivery) -> dict[str, Any]:
    frame = msgspec.json.decode(delivery.payload)
    assert isinstance(frame, dict)
    return frame


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def stored(result: object) -> tuple[Message, bool]:
    """The ``(message, created)`` a per-item result carries (fails if it is an error)."""
    assert isinstance(result, tuple), result
    message, created = result
    assert isinstance(message, Message) and isinstance(created, bool)
    return message, created


@asynccontextmanager
async def running(
    tmp_path: Path, *, limits: Limits | None = None, shared: bool = False
) -> AsyncIterator[Rig]:
    """Services over a fresh SQLite database in ``tmp_path``, on a hand-moved clock."""
    clock = ManualClock(START)
    store = SQLiteStore(tmp_path / "hubbub.db")
    await store.open()
    hooked = Hooked(store)
    broker = MemoryBroker()
    limits = limits or Limits()
    services = build_services(cast(Store, hooked), broker, clock, limits, shared=shared)
    uploads = UploadService(store, clock, tmp_path / "uploads", UPLOAD_MAX, UPLOAD_TYPES)
    rig = Rig(clock, store, hooked, broker, limits, services, uploads, shared)
    broker.subscribe(rig.capture)
    try:
        yield rig
    finally:
        for each in (services, *rig._others):
            await each.presence.drain()
            each.presence.close()
        await broker.stop()
        await store.close()
