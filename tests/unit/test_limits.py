"""The limits' settings, addresses, answers and memory, without a server."""

from __future__ import annotations

import pytest

from hubbub.clock import ManualClock
from hubbub.config import ConfigError, Settings
from hubbub.errors import RateLimited
from hubbub.limits.base import Rate
from hubbub.limits.memory import MemoryLimiter
from hubbub.limits.quota import Quota, TooManyConnections, client_address, retry_after
from hubbub.limits.settings import Quotas
from hubbub.protocol import events


def test_the_defaults_and_the_settings() -> None:
    quotas = Settings.from_env({}).quotas
    assert quotas == Quotas()
    assert (quotas.send, quotas.connect) == (Rate(10, 30), Rate(20, 50))
    assert quotas.max_connections_per_user == 20
    assert quotas.send_server.unlimited  # the API key: no limit unless set
    assert quotas.client_ip_header is None
    set_ = Settings.from_env(
        {
            "HUBBUB_SEND_RATE": "2.5",
            "HUBBUB_SEND_BURST": "5",
            "HUBBUB_SEND_RATE_SERVER": "100",
            "HUBBUB_MAX_CONNECTIONS_PER_USER": "0",
            "HUBBUB_CONNECT_RATE_PER_IP": "0",
            "HUBBUB_CLIENT_IP_HEADER": "X-Forwarded-For",
        }
    ).quotas
    assert set_.send == Rate(2.5, 5)
    assert set_.send_server == Rate(100, 300)  # three seconds' worth
    assert set_.max_connections_per_user == 0 and set_.connect.unlimited
    assert set_.client_ip_header == "X-Forwarded-For"


@pytest.mark.parametrize("value", ["-1", "many", "nan", "inf"])
def test_a_bad_limit_setting_stops_the_start(value: str) -> None:
    with pytest.raises(ConfigError, match="HUBBUB_SEND_RATE"):
        Settings.from_env({"HUBBUB_SEND_RATE": value})


def test_the_client_address() -> None:
    header = "X-Forwarded-For"
    assert client_address("10.1.1.1", [], None) == "10.1.1.1"
    assert client_address("10.1.1.1", ["1.2.3.4"], None) == "10.1.1.1"  # not trusted
    assert client_address("10.1.1.1", [], header) == "10.1.1.1"  # not through the proxy
    assert client_address("10.1.1.1", ["1.2.3.4, 5.6.7.8"], header) == "5.6.7.8"
    assert client_address("10.1.1.1", ["1.2.3.4", "5.6.7.8 ,"], header) == "5.6.7.8"
    assert client_address(None, [], None) == "unknown"


def test_a_refusal_says_when_to_retry() -> None:
    error = RateLimited("slow down", retry_after_ms=1001)
    assert retry_after(error) == {"Retry-After": "2"}
    assert retry_after(RateLimited("slow down", retry_after_ms=1)) == {"Retry-After": "1"}
    assert retry_after(RateLimited("typing")) == {}
    assert events.refusal(3, error) == (
        b'{"type":"error","id":3,"code":"rate_limited","message":"slow down","retry_after_ms":1001}'
    )
    assert b"retry_after_ms" not in events.refusal(3, RateLimited("typing"))


async def test_the_quota_over_memory() -> None:
    clock = ManualClock()
    quota = Quota(
        MemoryLimiter(clock),
        Quotas(
            send_rate=1,
            send_burst=2,
            connect_rate_per_ip=1,
            connect_burst_per_ip=1,
            max_connections_per_user=1,
        ),
    )
    assert (await quota.sends("u", 3)).granted == 2
    assert (await quota.sends("u", 1)).retry_after_ms == 1000
    assert (await quota.sends("u", 50, by_key=True)).granted == 50  # the key: no limit
    clock.advance(1)
    assert (await quota.sends("u", 1)).granted == 1
    assert quota.knock_now("1.2.3.4")
    with pytest.raises(RateLimited) as refused:
        quota.knock_now("1.2.3.4")
    assert refused.value.retry_after_ms == 1000
    assert quota.enter_now("u")
    quota.opened("u", "c1")
    with pytest.raises(TooManyConnections) as full:
        quota.enter_now("u")
    assert full.value.code == "too_many_connections"
    quota.closed("u", "c1")
    assert quota.enter_now("u")


def test_memory_forgets_buckets_that_are_full_again() -> None:
    clock = ManualClock()
    memory = MemoryLimiter(clock)
    rate = Rate(10, 10)
    for n in range(10_001):  # past the first threshold: none is full yet, all kept
        memory.take_now(f"old{n}", 1, rate)
    assert len(memory._buckets) == 10_001
    clock.advance(0.2)  # every one of them is full again
    for n in range(10_002):
        memory.take_now(f"new{n}", 1, rate)
    assert len(memory._buckets) <= 10_002
    assert not any(key.startswith("old") for key in memory._buckets)
    assert memory.take_now("old1", 10, rate).granted == 10  # forgotten is full
