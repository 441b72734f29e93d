"""The limits port's contract, run against memory and Redis."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from hubbub.clock import SystemClock
from hubbub.limits.base import Limiter, Rate
from hubbub.limits.memory import MemoryLimiter
from hubbub.limits.redis import RedisLimiter
from tests.services import REDIS_URL, need

RATE = Rate(20, 3)  # a token every 50 ms, three at once
PENDING = 0.4


def redis_limiter(prefix: str, ttl: float = 15.0) -> RedisLimiter:
    return RedisLimiter(REDIS_URL, ttl=ttl, prefix=prefix, pending_ttl=PENDING)


@pytest.fixture
def prefix() -> str:
    return f"hubbub:test:{uuid.uuid4().hex}:"


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Limiter]:
    made: Limiter
    if request.param == "memory":
        made = MemoryLimiter(SystemClock(), pending_ttl=PENDING)
    else:
        need(REDIS_URL, 6379, "Redis")
        made = redis_limiter(prefix)
    await made.start()
    yield made
    await made.stop()


async def test_a_bucket_starts_full_and_refills_at_its_rate(limiter: Limiter) -> None:
    first = await limiter.take("a", 3, RATE)
    assert (first.granted, first.retry_after_ms) == (3, 0)
    empty = await limiter.take("a", 1, RATE)
    assert empty.granted == 0
    assert 0 < empty.retry_after_ms <= 50
    await asyncio.sleep(empty.retry_after_ms / 1000)
    assert (await limiter.take("a", 1, RATE)).granted == 1  # the advertised wait was enough
    assert (await limiter.take("b", 3, RATE)).granted == 3  # buckets are separate


async def test_a_batch_gets_the_tokens_there_are(limiter: Limiter) -> None:
    batch = await limiter.take("a", 5, RATE)
    assert batch.granted == 3
    assert 0 < batch.retry_after_ms <= 50
    await asyncio.sleep(0.12)  # two tokens' worth, not three
    assert (await limiter.take("a", 3, RATE)).granted == 2


async def test_a_bucket_holds_no_more_than_its_burst(limiter: Limiter) -> None:
    await limiter.take("a", 1, RATE)
    await asyncio.sleep(0.3)  # would be six tokens without the cap
    assert (await limiter.take("a", 10, RATE)).granted == 3


async def test_places_are_reserved_taken_and_given_back(limiter: Limiter) -> None:
    assert await limiter.enter("u", 2)
    assert await limiter.enter("u", 2)
    assert not await limiter.enter("u", 2)  # two reserved: full
    assert await limiter.enter("v", 2)  # another user's places are its own
    limiter.opened("u", "c1")
    limiter.opened("u", "c2")
    await asyncio.sleep(0.05)
    assert await limiter.connections("u") == 2
    assert not await limiter.enter("u", 2)
    limiter.closed("u", "c1")
    await asyncio.sleep(0.05)
    assert await limiter.connections("u") == 1
    assert await limiter.enter("u", 2)


async def test_a_reservation_no_session_takes_lapses(limiter: Limiter) -> None:
    assert await limiter.enter("u", 1)
    assert not await limiter.enter("u", 1)
    await asyncio.sleep(PENDING + 0.1)
    assert await limiter.enter("u", 1)


async def test_processes_share_buckets_and_counts(prefix: str) -> None:
    need(REDIS_URL, 6379, "Redis")
    one, two = redis_limiter(prefix), redis_limiter(prefix)
    for made in (one, two):
        await made.start()
    try:
        assert (await one.take("a", 2, RATE)).granted == 2
        assert (await two.take("a", 2, RATE)).granted == 1
        assert await one.enter("u", 2)
        one.opened("u", "c1")
        assert await two.enter("u", 2)
        two.opened("u", "c2")
        assert not await one.enter("u", 2)
        two.closed("u", "c2")
        await asyncio.sleep(0.05)
        assert await one.enter("u", 2)
    finally:
        for made in (one, two):
            await made.stop()


async def test_a_dead_process_places_lapse_and_a_live_one_keeps_them(prefix: str) -> None:
    need(REDIS_URL, 6379, "Redis")
    dead, live = redis_limiter(prefix, ttl=0.6), redis_limiter(prefix, ttl=0.6)
    for made in (dead, live):
        await made.start()
    try:
        for made, cid in ((dead, "c1"), (live, "c2")):
            assert await made.enter("u", 5)
            made.opened("u", cid)
        await asyncio.sleep(0.05)
        assert await live.connections("u") == 2
        for task in dead._tasks:  # killed: nothing refreshes its entries any more
            task.cancel()
        await asyncio.sleep(1.0)
        assert await live.connections("u") == 1  # refreshed every ttl / 3
    finally:
        await live.stop()
        await dead._client.aclose()


async def test_a_clean_stop_gives_the_places_back(prefix: str) -> None:
    need(REDIS_URL, 6379, "Redis")
    one, other = redis_limiter(prefix), redis_limiter(prefix)
    for made in (one, other):
        await made.start()
    assert await one.enter("u", 5)
    one.opened("u", "c1")
    await asyncio.sleep(0.05)
    await one.stop()
    try:
        assert await other.connections("u") == 0
    finally:
        await other.stop()


async def test_without_redis_everything_is_let_through_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = RedisLimiter("redis://127.0.0.1:1/0", prefix="hubbub:test:gone:")
    await gone.start()
    try:
        with caplog.at_level(logging.WARNING, logger="hubbub.limits"):
            for _ in range(3):
                assert (await gone.take("a", 5, RATE)).granted == 5
                assert await gone.enter("u", 1)
        assert gone.down
        warnings = [r for r in caplog.records if r.name == "hubbub.limits"]
        assert len(warnings) == 1
        assert "letting requests through" in warnings[0].getMessage()
    finally:
        await gone.stop()
