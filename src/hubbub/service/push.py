"""Push notifications: the caller's devices and settings, and the outbox worker.

Every process runs a ``PushWorker`` (unless ``HUBBUB_PUSH=off``). Each pass
moves the outbox on (``store/push.py``): noted messages become rows per
recipient; due rows are decided on by ``notify``'s rules and the cluster's
presence (a recipient who seems online is looked at once more after the
presence grace, in case they were only leaving); composed pushes go to their
provider, and are retried with backoff, dropped when too old, or their
device forgotten when the provider says it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from hubbub.clock import Clock, now_ms
from hubbub.errors import Invalid
from hubbub.ids import new_id
from hubbub.models import Device, DoNotDisturb, Notifications
from hubbub.presence.base import Presence
from hubbub.push import expo, webhook
from hubbub.push.base import REQUEST_DEADLINE, Notice, Provider, Push
from hubbub.push.settings import PushSettings
from hubbub.service import notify
from hubbub.store.base import PushStore
from hubbub.store.push import Decision, Outgoing, Settled, Ticket
from hubbub.tasks import log_failure

if TYPE_CHECKING:
    from hubbub.metrics import Metrics

log = logging.getLogger("hubbub.push")

PROVIDERS = ("expo", "webhook")
PLATFORMS = ("ios", "android", "web")
MAX_APP_ID = 200
LATEST_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the latest time an ``until`` may name."""
EXPAND_BATCH = 500
"""Noted messages one pass expands."""
DUE_BATCH = 100
"""Outbox rows one pass decides on (on SQLite, sends wait while it reads them)."""
SEND_BATCH = 100
"""Pushes one pass hands to the providers: one Expo request, or two rounds of webhook
requests, so that a pass ends well within its lease even when every request times out."""
RECEIPTS_EVERY = 5.0
"""Seconds between looks for Expo receipts that are due."""
RECEIPT_KEPT_MS = 24 * 3600 * 1000
"""Expo keeps a receipt for a day: a ticket older than that is given up on."""
RECEIPTS_BATCH = 1000
"""Tickets one look for receipts takes."""
WAKE_INTERVAL = 0.05
"""Seconds between idle passes at most, however often sends wake the worker."""
STOP_WAIT = 5.0
"""Seconds a stopping process waits for the pass under way (pushes being handed over)."""

_encoder = msgspec.json.Encoder()
_notice = msgspec.json.Decoder(Notice)


def providers(settings: PushSettings) -> dict[str, Provider]:
    """The providers the settings configure: Expo always, the webhook when its URL is set."""
    # A request may take a fraction of the lease: it ends while its pushes are held.
    deadline = min(REQUEST_DEADLINE, settings.lease / 3)
    found: dict[str, Provider] = {
        "expo": expo.ExpoProvider(
            settings.expo_url,
            settings.expo_access_token,
            settings.expo_receipts_url,
            deadline=deadline,
        )
    }
    if settings.webhook_url and settings.webhook_secret:
        found["webhook"] = webhook.WebhookProvider(
            settings.webhook_url, settings.webhook_secret, deadline=deadline
        )
    return found


class PushService:
    """What a user sets: devices, per conversation notifications, do-not-disturb."""

    def __init__(self, store: PushStore, clock: Clock, configured: tuple[str, ...]) -> None:
        self.store = store
        self.clock = clock
        self.configured = configured

    async def register(
        self, user: str, provider: str, token: str, platform: str, app_id: str | None
    ) -> Device:
        if provider not in PROVIDERS:
            raise Invalid(f"provider must be one of {', '.join(PROVIDERS)}")
        if provider not in self.configured:
            raise Invalid(f"the {provider} provider is not configured on this server")
        if platform not in PLATFORMS:
            raise Invalid(f"platform must be one of {', '.join(PLATFORMS)}")
        if provider == "expo" and not expo.valid_token(token):
            raise Invalid("an expo token looks like ExponentPushToken[...]")
        if not token or len(token) > webhook.MAX_TOKEN or token != token.strip():
            raise Invalid(
                f"token must be 1 to {webhook.MAX_TOKEN} characters, without spaces around it"
            )
        if app_id is not None and not 1 <= len(app_id) <= MAX_APP_ID:
            raise Invalid(f"app_id must be 1 to {MAX_APP_ID} characters")
        return await self.store.register_device(
            user, provider, token, platform, app_id, now_ms(self.clock)
        )

    async def devices(self, user: str) -> list[Device]:
        return await self.store.list_devices(user)

    async def forget(self, user: str, device_id: str) -> None:
        await self.store.delete_device(user, device_id)

    async def set_notifications(
        self, user: str, cid: str, level: str, until: datetime | None
    ) -> Notifications:
        if until is not None and level == "all":
            raise Invalid("until goes with mentions or none (all has no end)")
        return await self.store.set_notifications(user, cid, level, self._until(until))

    async def notifications(self, user: str, cid: str) -> Notifications:
        return await self.store.get_notifications(user, cid)

    async def set_dnd(self, user: str, until: datetime | None) -> DoNotDisturb:
        return await self.store.set_dnd(user, self._until(until), now_ms(self.clock))

    async def dnd(self, user: str) -> DoNotDisturb:
        return await self.store.get_dnd(user)

    def _until(self, until: datetime | None) -> int | None:
        """``until`` in milliseconds: in the future, and no later than the year 9999."""
        if until is None:
            return None
        until_ms = int(until.timestamp() * 1000)
        if until_ms <= now_ms(self.clock):
            raise Invalid("until must be in the future")
        if until_ms > LATEST_MS:
            raise Invalid("until must be no later than 9999-12-31T23:59:59Z")
        return until_ms


class PushWorker:
    """Drains the outbox; any number of processes may run one at once."""

    def __init__(
        self,
        store: PushStore,
        presence: Presence,
        clock: Clock,
        settings: PushSettings,
        providers: dict[str, Provider],
        grace: float,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.presence = presence
        self.clock = clock
        self.settings = settings
        self.providers = providers
        self.grace_ms = int(grace * 1000)
        self.window_ms = int(settings.window * 1000)
        self.lease_ms = int(settings.lease * 1000)
        self.max_age_ms = int(settings.max_age * 1000)
        self.counts = {
            result: metrics.pushes.labels(result)
            for result in ("queued", "sent", "retried", "failed", "dropped", "gone")
        }
        self.backlog = 0
        self.oldest_ms: int | None = None
        self._receipts_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Let the pass under way finish (pushes being handed over are settled), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_WAIT)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        for provider in self.providers.values():
            await provider.close()

    def wake(self) -> None:
        """Something was noted for push: look at the outbox soon, not at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            started = self.clock.monotonic()
            try:
                busy = await self.step()
            except Exception as exc:  # the database is away: try again at the next poll
                log_failure(log, "push worker", exc)
                busy = 0
            if busy:
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll)
            # Woken by every send: at most one idle pass per WAKE_INTERVAL.
            rest = WAKE_INTERVAL - (self.clock.monotonic() - started)
            if rest > 0 and not self._stopping:
                await asyncio.sleep(rest)

    async def step(self) -> int:
        """One pass over every step of the outbox; the rows it moved."""
        now = now_ms(self.clock)
        moved = await self.store.push_expand(now, self.window_ms, EXPAND_BATCH)
        moved += await self._decide()
        moved += await self._send()
        if self.clock.monotonic() >= self._receipts_at:
            self._receipts_at = self.clock.monotonic() + RECEIPTS_EVERY
            moved += await self._receipts()
            expired = await self.store.push_expire_sends(now - self.max_age_ms, now)
            self.counts["dropped"].inc(expired)
            self.backlog, self.oldest_ms = await self.store.push_backlog()
        return moved

    async def _decide(self) -> int:
        now, lease = now_ms(self.clock), new_id("l")
        due = await self.store.push_claim_due(now, lease, self.lease_ms, DUE_BATCH)
        if not due:
            return 0
        told = {d.id: notify.notable(d, now) for d in due}
        wanted = sorted({d.user_id for d in due if told[d.id]})
        online = await self.presence.online(wanted) if wanted else set()
        decisions = []
        for d in due:
            messages = told[d.id]
            if messages and d.user_id in online:
                if not d.rechecked:  # online, or leaving within the grace: look once more
                    decisions.append(Decision(d, recheck_at=now + self.grace_ms + 1000))
                    continue
                messages = []  # online: the messages reached them live
            payloads = {}
            if messages:
                # One payload for every device: whichever process sends it.
                payload = _encoder.encode(notify.notice(d, messages, self.settings.preview))
                payloads = {device.id: payload.decode() for device in d.devices}
            decisions.append(Decision(d, payloads=payloads))
        queued = await self.store.push_settle_due(lease, decisions, now, self.window_ms)
        self.counts["queued"].inc(queued)
        return len(due)

    async def _send(self) -> int:
        now, lease = now_ms(self.clock), new_id("l")
        claimed = await self.store.push_claim_sends(
            now, lease, self.lease_ms, SEND_BATCH, sorted(self.providers)
        )
        if not claimed:
            return 0
        stale = Settled()
        # Batches of one provider and one app: Expo refuses a request whose
        # tokens belong to several projects.
        batches: dict[tuple[str, str | None], list[Outgoing]] = {}
        for out in claimed:
            if now - out.created_at > self.max_age_ms:
                stale.done.append(out.id)
                self.counts["dropped"].inc()
            else:
                batches.setdefault((out.device.provider, out.device.app_id), []).append(out)
        if stale.done:
            await self.store.push_settle_sends(lease, stale, now)
        for (name, _app), outgoing in batches.items():
            provider = self.providers[name]
            for start in range(0, len(outgoing), provider.batch):
                await self._hand(provider, lease, outgoing[start : start + provider.batch])
        return len(claimed)

    async def _hand(self, provider: Provider, lease: str, batch: list[Outgoing]) -> None:
        """Hand one batch over and record what became of it, within one renewed lease.

        The lease is extended first (rows another process took once ours ran
        out are left to it), each request may take ``REQUEST_DEADLINE`` (well
        under a lease), and the outcome is written at once: no other process
        takes these rows between their renewal and their settling.
        """
        now = now_ms(self.clock)
        held = set(
            await self.store.push_renew_sends(lease, [o.id for o in batch], now + self.lease_ms)
        )
        batch = [o for o in batch if o.id in held]
        if not batch:
            return
        pushes = [
            Push(
                o.id,
                o.user_id,
                o.device,
                _notice.decode(o.payload),
                (o.created_at + self.max_age_ms) // 1000,
            )
            for o in batch
        ]
        outcomes = await provider.send(pushes)
        now = now_ms(self.clock)
        settled = Settled()
        for out, outcome in zip(batch, outcomes, strict=True):
            if outcome.result == "sent":
                settled.done.append(out.id)
                self.counts["sent"].inc()
                if outcome.ticket is not None:
                    check = now + int(self.settings.expo_receipt_delay * 1000)
                    ticket = Ticket(
                        outcome.ticket,
                        out.id,
                        out.device.id,
                        out.payload,
                        out.created_at,
                        out.attempts,
                        now,
                    )
                    settled.tickets.append((ticket, check))
            elif outcome.result == "retry":
                at = self._retry_at(now, out.attempts, outcome.retry_after, out.created_at)
                if at is None:
                    settled.done.append(out.id)
                else:
                    settled.retry[out.id] = at
            else:
                settled.done.append(out.id)
                if outcome.result == "gone":
                    settled.gone.append(out.device.id)
                    self.counts["gone"].inc()
                else:
                    self.counts["failed"].inc()
                log.warning(
                    "push %s to device %s: %s (%s)",
                    out.id,
                    out.device.id,
                    outcome.result,
                    outcome.detail,
                )
        await self.store.push_settle_sends(lease, settled, now_ms(self.clock))

    def _retry_at(self, now: int, attempts: int, after: float | None, created: int) -> int | None:
        """When to try again (counted as retried); None: by then too old (counted as dropped)."""
        s = self.settings
        at = now + int(notify.backoff(attempts, after, s.retry_base, s.retry_max) * 1000)
        if at - created > self.max_age_ms:
            self.counts["dropped"].inc()
            return None
        self.counts["retried"].inc()
        return at

    async def _receipts(self) -> int:
        expo_provider = self.providers.get("expo")
        if expo_provider is None:
            return 0
        now = now_ms(self.clock)
        tickets = await self.store.push_claim_tickets(now, self.lease_ms, RECEIPTS_BATCH)
        if not tickets:
            return 0
        receipts = {
            r.ticket: r.outcome for r in await expo_provider.receipts([t.id for t in tickets])
        }
        done, gone, retry = [], [], {}
        for ticket in tickets:
            outcome = receipts.get(ticket.id)
            if outcome is None:  # not known yet; Expo keeps receipts for a day
                if now - ticket.sent_at > RECEIPT_KEPT_MS:
                    done.append(ticket.id)
            elif outcome.result == "retry":  # Apple or Google asked to slow down
                at = self._retry_at(now, ticket.attempts, outcome.retry_after, ticket.created_at)
                if at is None:
                    done.append(ticket.id)
                else:
                    retry[ticket.id] = at
            else:
                done.append(ticket.id)
                if outcome.result == "gone":
                    gone.append(ticket.device_id)
                    self.counts["gone"].inc()
                elif outcome.result == "failed":
                    self.counts["failed"].inc()
                    log.warning(
                        "push receipt %s for device %s: %s",
                        ticket.id,
                        ticket.device_id,
                        outcome.detail,
                    )
        await self.store.push_settle_tickets(done, gone, retry)
        return len(tickets)
