"""Messages: send, edit, delete, history, resume, receipts.

Transports (WebSocket gateway, REST API) parse and authenticate, then call
here; the store persists; ``Fanout`` hands committed events to the broker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hubbub.auth import Identity
from hubbub.broker.base import Delivery
from hubbub.clock import Clock, now_ms
from hubbub.config import Limits
from hubbub.errors import HubbubError, Invalid, RateLimited, TooLarge
from hubbub.limits.quota import Quota
from hubbub.models import (
    Message,
    Page,
    Receipt,
    Replay,
    SearchPage,
    SendItem,
    StreamEvent,
    Version,
)
from hubbub.protocol import events
from hubbub.service.fanout import Fanout
from hubbub.store.base import Appended, Store

if TYPE_CHECKING:
    from hubbub.service.presence import PresenceService

MAX_CLIENT_MSG_ID = 128
MAX_ATTACHMENTS = 10
MAX_EMOJI = 32
USER_KINDS = ("text", "image", "file")
SERVER_KINDS = ("system", "text")
SYSTEM_SENDER = "system"
MAX_RESUME_CONVERSATIONS = 1000


class ChatService:
    def __init__(
        self,
        store: Store,
        fanout: Fanout,
        clock: Clock,
        limits: Limits,
        presence: PresenceService,
        quota: Quota | None = None,
        stored: Callable[[], None] = lambda: None,
    ) -> None:
        """``stored`` is called after messages were stored (the push worker's wake-up)."""
        self.store = store
        self.stored = stored
        self.quota = quota
        self.fanout = fanout
        self.clock = clock
        self.limits = limits
        self.presence = presence
        self._names: dict[str, str] = {}

    async def seen(self, identity: Identity) -> None:
        """Record the display name a token carries, when it is new."""
        name = identity.name
        if name and self._names.get(identity.user_id) != name:
            await self.store.set_user_name(identity.user_id, name, now_ms(self.clock))
            self._names[identity.user_id] = name

    # Sending ------------------------------------------------------------

    def check_body(self, body: str) -> str:
        if not body.strip():
            raise Invalid("body must not be empty")
        if len(body) > self.limits.max_body_chars:
            raise TooLarge(f"body exceeds {self.limits.max_body_chars} characters")
        return body

    def validate(self, item: SendItem, kinds: tuple[str, ...] = USER_KINDS) -> SendItem:
        if item.kind not in kinds:
            raise Invalid(f"kind must be one of {', '.join(kinds)}")
        if item.kind in ("image", "file"):
            if not item.attachments:
                raise Invalid(f"a {item.kind} message carries at least one upload")
            if len(item.body) > self.limits.max_body_chars:
                raise TooLarge(f"body exceeds {self.limits.max_body_chars} characters")
        else:
            if item.attachments:
                raise Invalid("attachments go with kind image or file")
            self.check_body(item.body)
        if len(item.attachments) > MAX_ATTACHMENTS:
            raise TooLarge(f"at most {MAX_ATTACHMENTS} attachments")
        if not item.client_msg_id or len(item.client_msg_id) > MAX_CLIENT_MSG_ID:
            raise Invalid(f"client_msg_id must be 1 to {MAX_CLIENT_MSG_ID} characters")
        return item

    async def send(
        self, user: str, items: list[SendItem], *, as_server: bool = False, by_key: bool = False
    ) -> list[Appended]:
        """Store messages in order; fan out the new ones after commit.

        Returns, per item, ``(message, created)`` or the error that refused it.
        A retried ``client_msg_id`` returns the stored message with
        ``created=False`` and delivers nothing.

        The batch takes one token per item from the sender's send bucket (the
        API key's with ``as_server`` or ``by_key``), in one check: the items
        beyond the tokens granted, the last ones, are refused ``rate_limited``.
        """
        if self.quota is None:
            return await self._send(user, items, as_server)
        taken = await self.quota.sends(user, len(items), by_key=as_server or by_key)
        if taken.granted >= len(items):
            return await self._send(user, items, as_server)
        refused = RateLimited(
            "sending too fast: wait before sending again", retry_after_ms=taken.retry_after_ms
        )
        head = await self._send(user, items[: taken.granted], as_server) if taken.granted else []
        return head + [refused] * (len(items) - taken.granted)

    async def _send(self, user: str, items: list[SendItem], as_server: bool) -> list[Appended]:
        results: list[Appended | None] = []
        valid: list[SendItem] = []
        for item in items:
            try:
                valid.append(self.validate(item, SERVER_KINDS if as_server else USER_KINDS))
                results.append(None)
            except HubbubError as exc:
                results.append(exc)
        if not valid:
            return [r for r in results if r is not None]
        known: dict[str, tuple[str, ...]] = {}
        if not self.fanout.shared:
            # One process: know the recipients before committing, so that
            # publishing right after the commit needs no further wait.
            known = {
                cid: await self.fanout.members(cid) for cid in {i.conversation_id for i in valid}
            }
        stored = list(await self.store.append_messages(user, valid, now_ms(self.clock), as_server))
        self.stored()
        if self.fanout.shared:  # several processes: members as of after the commit (see Fanout)
            created = {a[0].conversation_id for a in stored if isinstance(a, tuple) and a[1]}
            known = {cid: await self.fanout.members(cid) for cid in created}
        stored_items = iter(stored)
        out: list[Appended] = []
        for result in results:
            if result is not None:
                out.append(result)
                continue
            appended = next(stored_items)
            if isinstance(appended, tuple) and appended[1]:
                message = appended[0]
                cid = message.conversation_id
                event = StreamEvent(
                    conversation_id=cid, seq=message.seq, type="message.new", message=message
                )
                self.fanout.publish_stream(event, known[cid])
                self.presence.stopped_by_message(user, cid)
            out.append(appended)
        return out

    async def send_one(
        self, user: str, item: SendItem, *, by_key: bool = False
    ) -> tuple[Message, bool]:
        (result,) = await self.send(user, [item], by_key=by_key)
        if isinstance(result, HubbubError):
            raise result
        return result

    async def edit(self, user: str, message_id: str, body: str) -> Message:
        self.check_body(body)
        event = await self.store.edit_message(user, message_id, body, self._now())
        return await self._publish_change(event)

    async def delete(self, user: str, message_id: str) -> Message:
        event = await self.store.delete_message(user, message_id, self._now())
        return await self._publish_change(event)

    async def _publish_change(self, event: StreamEvent) -> Message:
        # The conversation is only known from the store's answer; its members
        # are cached from earlier sends in the common case, and then nothing
        # is awaited between the commit and the publication.
        cid = event.conversation_id
        cached = self.fanout.cached(cid)
        self.fanout.publish_stream(event, cached if cached else await self.fanout.members(cid))
        assert event.message is not None
        return event.message

    async def post_system(self, item: SendItem) -> tuple[Message, bool]:
        """A message from the app's backend (sender ``system``); no membership needed."""
        (result,) = await self.send(SYSTEM_SENDER, [item], as_server=True)
        if isinstance(result, HubbubError):
            raise result
        return result

    async def react(self, user: str, message_id: str, emoji: str, add: bool) -> tuple[int, bool]:
        """Add or remove a reaction; ``(count, changed)``. A change is announced to members."""
        if not emoji or len(emoji) > MAX_EMOJI or any(c.isspace() for c in emoji):
            raise Invalid(f"emoji must be 1 to {MAX_EMOJI} characters without spaces")
        cid, count, changed = await self.store.react(user, message_id, emoji, add, self._now())
        if not changed:
            return count, False
        payload = events.event(
            "reaction",
            conversation_id=cid,
            message_id=message_id,
            user_id=user,
            emoji=emoji,
            action="added" if add else "removed",
            count=count,
        )
        self.fanout.publish_to(await self.fanout.members(cid), payload, cid)
        return count, True

    async def search(
        self, user: str, text: str, conversation_id: str | None, limit: int, offset: int
    ) -> SearchPage:
        text = text.strip()
        if not text or len(text) > 200:
            raise Invalid("q must be 1 to 200 characters")
        if not 1 <= limit <= self.limits.page_max or offset < 0:
            raise Invalid(f"limit must be 1 to {self.limits.page_max}, offset not negative")
        return await self.store.search(user, text, conversation_id, limit, offset)

    # Reading ------------------------------------------------------------

    async def message(self, user: str, message_id: str) -> Message:
        return await self.store.get_message(user, message_id)

    async def versions(self, user: str, message_id: str) -> list[Version]:
        return await self.store.message_versions(user, message_id)

    async def history(
        self,
        user: str,
        conversation_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Page:
        limit = self.limits.page_default if limit is None else limit
        if not 1 <= limit <= self.limits.page_max:
            raise Invalid(f"limit must be 1 to {self.limits.page_max}")
        if (before is not None and before < 0) or (after is not None and after < 0):
            raise Invalid("cursors must not be negative")
        return await self.store.list_messages(
            user, conversation_id, before=before, after=after, limit=limit
        )

    async def replay(self, user: str, cursors: dict[str, int]) -> list[Replay]:
        if len(cursors) > MAX_RESUME_CONVERSATIONS:
            raise TooLarge(f"resume names at most {MAX_RESUME_CONVERSATIONS} conversations")
        if any(seq < 0 for seq in cursors.values()):
            raise Invalid("cursors must not be negative")
        return await self.store.replay(user, cursors, self.limits.resume_limit)

    async def events_after(self, cid: str, after: int, limit: int) -> list[StreamEvent]:
        """Committed stream events after ``after``, as live events carry them."""
        return await self.store.events_after(cid, after, limit)

    async def missed(self, cid: str, after: int, limit: int) -> list[Delivery]:
        """Committed stream events after ``after``, ready for local delivery."""
        found = await self.events_after(cid, after, limit)
        recipients = await self.fanout.members(cid)
        return [Delivery(cid, e.seq, recipients, events.stream(e)) for e in found]

    # Receipts -----------------------------------------------------------

    async def mark(self, user: str, conversation_id: str, kind: str, seq: int) -> Receipt | None:
        """Move the read or delivered pointer forward; members get a ``receipt``."""
        if seq < 0:
            raise Invalid("seq must not be negative")
        receipt = await self.store.mark(user, conversation_id, kind, seq)
        if receipt is not None:
            payload = events.event(
                "receipt",
                conversation_id=conversation_id,
                user_id=user,
                kind=kind,
                seq=receipt.read_seq if kind == "read" else receipt.delivered_seq,
                read_seq=receipt.read_seq,
                delivered_seq=receipt.delivered_seq,
            )
            self.fanout.publish_to(
                await self.fanout.members(conversation_id), payload, conversation_id
            )
        return receipt

    async def unread(self, user: str) -> dict[str, int]:
        return await self.store.unread(user)

    def _now(self) -> int:
        return now_ms(self.clock)
