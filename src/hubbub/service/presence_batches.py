"""Presence batches: published at once when quiet, in batches during a burst."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from hubbub.service.fanout import Fanout

log = logging.getLogger("hubbub.presence")

# Presence is published at once when none went out in the last BATCH_WINDOW
# seconds; otherwise it waits for the next batch, published together one
# window after the previous one. When a large group connects at once, each
# member's arrival goes to every other member (members squared frames); in a
# batch, a recipient's frames leave in one write instead of one each, and the
# write is what the kernel charges for. A pass publishes at most BATCH_FRAMES
# recipient frames (one larger announcement goes alone), so one batch never
# holds up the event loop for long. A longer window coalesces more but lets a
# burst run further ahead of slow readers, and what they have not read waits
# in this process's memory.
BATCH_WINDOW = 0.02
BATCH_FRAMES = 20_000


class Batches:
    """Publishes presence at once when quiet, in batches during a burst."""

    def __init__(self, fanout: Fanout, window: float = BATCH_WINDOW) -> None:
        self._fanout = fanout
        self._window = window
        self._pending: deque[tuple[tuple[str, ...], bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def publish(self, recipients: tuple[str, ...], payload: bytes) -> None:
        if self._timer is None:
            self._send(recipients, payload)
            if not self._closed:
                self._timer = asyncio.get_running_loop().call_later(self._window, self._next)
        else:
            self._pending.append((recipients, payload))

    def _next(self) -> None:
        pending = self._pending
        if not pending:
            self._timer = None
            return
        frames = 0
        while pending:
            recipients, payload = pending[0]
            if frames and frames + len(recipients) > BATCH_FRAMES:
                break  # the rest of a large batch follows in the next pass
            pending.popleft()
            self._send(recipients, payload)
            frames += len(recipients)
        delay = 0.0 if pending else self._window
        self._timer = asyncio.get_running_loop().call_later(delay, self._next)

    def flush(self, close: bool = False) -> None:
        """Publish everything waiting now; once closed, publish at once from then on."""
        self._closed = self._closed or close
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            self._send(*self._pending.popleft())

    def _send(self, recipients: tuple[str, ...], payload: bytes) -> None:
        # One event that cannot be published is lost alone (as when each
        # announcement published its own); the batches go on.
        try:
            self._fanout.publish_to(recipients, payload)
        except Exception:
            log.exception("publishing presence failed")
