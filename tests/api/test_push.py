"""Push devices and settings over REST, in process: what is accepted and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.api.rest import bearer, error, group, ok, on_behalf

DEVICES = "/api/v1/push/devices"
DND = "/api/v1/push/do-not-disturb"
EXPO = {"provider": "expo", "token": "ExponentPushToken[abc]", "platform": "ios"}


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def test_devices_are_listed_only_to_their_owner(rest: httpx.AsyncClient) -> None:
    device = ok(await rest.post(DEVICES, headers=bearer("ann"), json=EXPO))["device"]
    assert device["provider"] == "expo" and device["app_id"] is None
    assert ok(await rest.get(DEVICES, headers=bearer("ann")))["devices"] == [device]
    assert ok(await rest.get(DEVICES, headers=bearer("bob")))["devices"] == []
    # The app's backend may register on a user's behalf.
    other = {**EXPO, "token": "ExponentPushToken[def]", "app_id": "com.example.chat"}
    ok(await rest.post(DEVICES, headers=on_behalf("ann"), json=other))
    assert len(ok(await rest.get(DEVICES, headers=bearer("ann")))["devices"]) == 2
    assert error(await rest.get(DEVICES)) == (401, "unauthorized")
    r = await rest.delete(f"{DEVICES}/{device['id']}", headers=bearer("bob"))
    assert error(r) == (404, "not_found")
    assert ok(await rest.delete(f"{DEVICES}/{device['id']}", headers=bearer("ann"))) == {"ok": True}


async def test_refused_registrations(rest: httpx.AsyncClient) -> None:
    for body in (
        {**EXPO, "provider": "webhook", "token": "fcm"},  # this server has no webhook
        {**EXPO, "token": "ExponentPushToken[]"},
        {**EXPO, "token": "x" * 4097},
        {**EXPO, "app_id": ""},
        {**EXPO, "platform": "symbian"},
        {**EXPO, "token": "ExponentPushToken[abc]\n"},
    ):
        assert error(await rest.post(DEVICES, headers=bearer("ann"), json=body)) == (
            422,
            "invalid",
        ), body
    r = await rest.post(DEVICES, headers=bearer("ann"), content=b"[1,")
    assert error(r) == (422, "invalid")


async def test_notification_levels(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    url = f"/api/v1/conversations/{cid}/notifications"
    assert ok(await rest.get(url, headers=bearer("bob")))["notifications"] == {
        "conversation_id": cid,
        "level": "all",
        "until": None,
    }
    set_ = ok(
        await rest.put(url, headers=bearer("bob"), json={"level": "none", "until": later(hours=8)})
    )["notifications"]
    assert set_["level"] == "none" and set_["until"].endswith("Z")
    assert ok(await rest.get(url, headers=bearer("bob")))["notifications"] == set_
    assert ok(await rest.get(url, headers=bearer("ann")))["notifications"]["level"] == "all"
    for body in (
        {"level": "none", "until": later(hours=-1)},  # in the past
        {"level": "none", "until": "9999-12-31T23:59:59-23:59"},  # after the year 9999
        {"level": "all", "until": later(hours=1)},  # all has no end
        {"level": "none", "until": "2030-01-01T00:00:00"},  # no time zone
        {"level": "loud"},
    ):
        assert error(await rest.put(url, headers=bearer("bob"), json=body)) == (422, "invalid")
    r = await rest.put(url, headers=bearer("eve"), json={"level": "none"})
    assert error(r) == (403, "forbidden")
    missing = "/api/v1/conversations/c_missing/notifications"
    assert error(await rest.get(missing, headers=bearer("bob"))) == (404, "not_found")


async def test_do_not_disturb(rest: httpx.AsyncClient) -> None:
    assert ok(await rest.get(DND, headers=bearer("ann"))) == {"do_not_disturb": {"until": None}}
    until = ok(await rest.put(DND, headers=bearer("ann"), json={"until": later(hours=1)}))
    assert until["do_not_disturb"]["until"] is not None
    assert ok(await rest.get(DND, headers=bearer("ann"))) == until
    assert ok(await rest.get(DND, headers=bearer("bob"))) == {"do_not_disturb": {"until": None}}
    assert ok(await rest.put(DND, headers=bearer("ann"), json={"until": None})) == {
        "do_not_disturb": {"until": None}
    }
    assert error(await rest.put(DND, headers=bearer("ann"), json={})) == (422, "invalid")
    for refused in (
        later(hours=-1),  # in the past
        "0001-01-01T00:00:00+23:59",  # before the year 1
        "9999-12-31T23:59:59-23:59",  # after the year 9999
    ):
        r = await rest.put(DND, headers=bearer("ann"), json={"until": refused})
        assert error(r) == (422, "invalid"), refused
