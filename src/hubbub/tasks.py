"""Fire-and-forget tasks that are kept alive and whose failures are logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from hubbub.errors import HubbubError

log = logging.getLogger("hubbub")


def log_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """A refusal (the database is away) in one line; anything else with its traceback."""
    if isinstance(exc, HubbubError):
        logger.warning("%s: %s", what, exc.message)
    else:
        logger.error("%s", what, exc_info=exc)


class TaskSet:
    def __init__(self, what: str) -> None:
        self.what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log_failure(log, f"{self.what} failed", exc)

    async def drain(self) -> None:
        """Wait until every task (and any it started) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()


STOP_WAIT = 2.0
"""Seconds a stopping component waits for its loops to end."""


async def cancel_and_wait(tasks: list[asyncio.Task[Any]], timeout: float = STOP_WAIT) -> None:
    """Cancel ``tasks`` and wait ``timeout`` seconds at most for them to end.

    redis-py can swallow a cancellation that lands inside a read, so a loop
    around one may go on; a stop must not wait for it forever (the loops also
    check a flag of their own).
    """
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=timeout)
    for task in late:
        log.warning("%s did not end within %g s of the stop", task.get_name(), timeout)
