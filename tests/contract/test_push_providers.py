"""The push provider contract (push/base.py), run against every provider.

Each provider talks to its local stand-in (tests/pushstub.py), a real HTTP
server speaking the provider's protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from hubbub.models import Device
from hubbub.push import expo, webhook
from hubbub.push.base import Notice, Provider, Push
from tests import pushstub
from tests.pushstub import Stub
from tests.support import free_port

EXPIRES = 2_000_000_000


@dataclass
class Rig:
    provider: Provider
    stub: Stub
    kind: str

    def device(self, n: int) -> Device:
        token = f"ExponentPushToken[dev-{n}]" if self.kind == "expo" else f"fcm-{n}"
        return Device(
            id=f"d{n}",
            provider="expo" if self.kind == "expo" else "webhook",
            token=token,
            platform="android",
            app_id=None,
            created_at="2026-01-01T00:00:00.000Z",
            updated_at="2026-01-01T00:00:00.000Z",
        )

    def push(self, n: int) -> Push:
        notice = Notice(
            title="ann",
            body=f"message {n}",
            badge=n,
            collapse_id="c_1",
            data={"conversation_id": "c_1", "message_id": f"m{n}", "seq": n},
        )
        return Push(f"p{n}", "bob", self.device(n), notice, EXPIRES)


@contextmanager
def _stub(kind: str) -> Iterator[Stub]:
    with pushstub.expo() if kind == "expo" else pushstub.webhook() as stub:
        yield stub


def _provider(kind: str, url: str) -> Provider:
    if kind == "expo":
        return expo.ExpoProvider(url + pushstub.SEND_PATH, access_token="expo-access")
    return webhook.WebhookProvider(url + "/hook", pushstub.WEBHOOK_SECRET)


@pytest.fixture(params=["expo", "webhook"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    with _stub(request.param) as stub:
        provider = _provider(request.param, stub.url)
        yield Rig(provider, stub, request.param)
        await provider.close()


async def test_pushes_are_sent_in_order(rig: Rig) -> None:
    outcomes = await rig.provider.send([rig.push(n) for n in range(3)])
    assert [o.result for o in outcomes] == ["sent"] * 3
    bodies = [m.get("body", m.get("notification", {}).get("body")) for m in rig.stub.delivered]
    assert sorted(bodies) == ["message 0", "message 1", "message 2"]


async def test_throttling_and_outages_are_retried_with_retry_after(rig: Rig) -> None:
    rig.stub.fail(1, 429, retry_after="7")
    (outcome,) = await rig.provider.send([rig.push(1)])
    assert outcome.result == "retry" and outcome.retry_after == 7
    rig.stub.fail(1, 503)
    (outcome,) = await rig.provider.send([rig.push(1)])
    assert outcome.result == "retry" and outcome.retry_after is None
    (outcome,) = await rig.provider.send([rig.push(1)])
    assert outcome.result == "sent"
    assert len(rig.stub.delivered) == 1


async def test_a_gone_device_is_said_to_be_gone(rig: Rig) -> None:
    gone = rig.push(1)
    rig.stub.gone.add(gone.device.token)
    outcomes = await rig.provider.send([gone, rig.push(2)])
    assert [o.result for o in outcomes] == ["gone", "sent"]


async def test_a_refusal_for_good_fails(rig: Rig) -> None:
    rig.stub.fail(1, 400)
    (outcome,) = await rig.provider.send([rig.push(1)])
    assert outcome.result == "failed"
    rig.stub.fail(1, 408)  # a timeout on the provider's side is worth another try
    (outcome,) = await rig.provider.send([rig.push(1)])
    assert outcome.result == "retry"


async def test_an_unreachable_provider_is_retried() -> None:
    for kind in ("expo", "webhook"):
        provider = _provider(kind, f"http://127.0.0.1:{free_port()}")
        (outcome,) = await provider.send([Rig(provider, Stub(), kind).push(1)])
        await provider.close()
        assert outcome.result == "retry", kind


async def test_receipts_tell_what_became_of_tickets(rig: Rig) -> None:
    first, second = rig.push(1), rig.push(2)
    rig.stub.gone_in_receipts.add(second.device.token)
    outcomes = await rig.provider.send([first, second])
    tickets = [o.ticket for o in outcomes if o.ticket is not None]
    receipts = await rig.provider.receipts([*tickets, "ticket-unknown"])
    if rig.kind == "webhook":
        assert tickets == [] and receipts == []  # a webhook's answer is final
        return
    assert len(tickets) == 2
    assert {r.ticket: r.outcome.result for r in receipts} == {
        tickets[0]: "sent",
        tickets[1]: "gone",
    }
    throttled = rig.push(3)
    rig.stub.throttled_in_receipts.add(throttled.device.token)
    (outcome,) = await rig.provider.send([throttled])
    assert outcome.ticket is not None
    (receipt,) = await rig.provider.receipts([outcome.ticket])
    assert receipt.outcome.result == "retry"  # Apple or Google asked to slow down


async def test_expo_splits_a_batch_of_several_projects() -> None:
    with pushstub.expo() as stub:
        provider = expo.ExpoProvider(stub.url + pushstub.SEND_PATH)
        rig = Rig(provider, stub, "expo")
        pushes = [rig.push(n) for n in range(4)]
        stub.projects = {pushes[1].device.token: "@other/app", pushes[3].device.token: "@other/app"}
        outcomes = await provider.send(pushes)
        await provider.close()
    assert [o.result for o in outcomes] == ["sent"] * 4
    statuses = [r["status"] for r in stub.requests]
    assert statuses == [400, 200, 200]
    assert sorted(len(r["body"]) for r in stub.requests[1:]) == [2, 2]
    assert [m["data"]["push_id"] for m in stub.delivered] != []
    assert sorted(m["data"]["push_id"] for m in stub.delivered) == ["p0", "p1", "p2", "p3"]


async def test_expo_batches_carry_the_access_token_and_collapse_id() -> None:
    with pushstub.expo() as stub:
        provider = expo.ExpoProvider(stub.url + pushstub.SEND_PATH, access_token="secret-token")
        rig = Rig(provider, stub, "expo")
        outcomes = await provider.send([rig.push(n) for n in range(expo.BATCH)])
        await provider.close()
    assert [o.result for o in outcomes] == ["sent"] * expo.BATCH
    (request,) = stub.requests
    assert request["headers"]["Authorization"] == "Bearer secret-token"
    assert len(request["body"]) == expo.BATCH
    assert request["body"][0]["data"]["collapse_id"] == "c_1"
    assert request["body"][0]["data"]["push_id"] == "p0"
    assert request["body"][0]["expiration"] == EXPIRES


def test_expo_tokens() -> None:
    assert expo.valid_token("ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]")
    assert expo.valid_token("ExpoPushToken[abc]")
    assert not expo.valid_token("ExponentPushToken[]")
    assert not expo.valid_token("ExponentPushToken[a b]")
    assert not expo.valid_token("fcm-token")
    assert not expo.valid_token("ExponentPushToken[abc]\n")
