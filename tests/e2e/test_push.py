"""Push notifications, end to end: a real server, and local stand-ins for Expo and a webhook.

The server runs as a child process pointed at the stand-ins (tests/pushstub.py),
with a short collapse window and presence grace so that the rules play out in
a second or two.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import pushstub
from tests.pushstub import Stub, expo_token, register, send
from tests.support import Client, ServerProcess, auth, create_group, new_id, open_direct

WINDOW = 0.3
GRACE = 0.5
SETTLED = WINDOW + GRACE + 2.5
"""Long enough for any push the server would send (a recheck after the grace included)."""


def push_env(expo: Stub, hook: Stub | None = None, **extra: str) -> dict[str, str]:
    env = {
        "HUBBUB_EXPO_PUSH_URL": expo.url + pushstub.SEND_PATH,
        "HUBBUB_PUSH_WINDOW": str(WINDOW),
        "HUBBUB_PUSH_POLL": "0.05",
        "HUBBUB_PUSH_RETRY_BASE": "0.2",
        "HUBBUB_PUSH_RETRY_MAX": "1",
        "HUBBUB_PRESENCE_GRACE": str(GRACE),
        **extra,
    }
    if hook is not None:
        env["HUBBUB_PUSH_WEBHOOK_URL"] = hook.url + "/hook"
        env["HUBBUB_PUSH_WEBHOOK_SECRET"] = pushstub.WEBHOOK_SECRET
    return env


@pytest.fixture
def expo() -> Iterator[Stub]:
    with pushstub.expo() as stub:
        yield stub


@pytest.fixture
def hook() -> Iterator[Stub]:
    with pushstub.webhook() as stub:
        yield stub


@pytest.fixture
def push_server(tmp_path: Path, expo: Stub, hook: Stub) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "server", **push_env(expo, hook)).start()
    yield proc
    proc.stop()


def to(stub: Stub, token: str) -> list[dict[str, Any]]:
    with stub.lock:
        return [m for m in stub.delivered if m.get("to", m.get("device", {}).get("token")) == token]


def settle() -> None:
    time.sleep(SETTLED)


def test_offline_user_gets_one_push_per_message(push_server: ServerProcess, expo: Stub) -> None:
    cid = open_direct(push_server, "ann", "bob")
    token = expo_token("bob")
    register(push_server, "bob", token)
    first = send(push_server, "ann", cid, "hello bob")
    expo.wait_for(1)
    time.sleep(WINDOW * 2)
    second = send(push_server, "ann", cid, "still there?")
    expo.wait_for(2)
    settle()
    pushes = to(expo, token)
    assert len(pushes) == 2, pushes
    assert [p["data"]["message_id"] for p in pushes] == [first["id"], second["id"]]
    assert [p["data"]["seq"] for p in pushes] == [first["seq"], second["seq"]]
    assert pushes[0]["body"] == "hello bob"
    assert pushes[0]["title"] == "ann"
    assert pushes[0]["data"]["conversation_id"] == cid
    assert pushes[0]["data"]["collapse_id"] == cid
    assert [p["badge"] for p in pushes] == [1, 2]  # the user's total unread
    # The sender has no device: only bob's token was ever pushed to.
    assert all(m["to"] == token for m in expo.delivered)


def test_a_burst_collapses_into_one_push(push_server: ServerProcess, expo: Stub) -> None:
    cid = create_group(push_server, "ann", ["bob"], title="Team")
    token = expo_token("bob")
    register(push_server, "bob", token)
    sent = [send(push_server, "ann", cid, f"part {i}") for i in range(3)]
    settle()
    pushes = to(expo, token)
    assert len(pushes) == 1, pushes
    assert pushes[0]["title"] == "ann in Team"
    assert pushes[0]["body"] == "3 new messages · part 2"
    assert pushes[0]["data"]["count"] == 3
    assert pushes[0]["data"]["message_id"] == sent[-1]["id"]


async def test_online_user_gets_none_and_offline_one_does(
    push_server: ServerProcess, expo: Stub
) -> None:
    cid = create_group(push_server, "ann", ["bob", "cat"])
    bob_token, cat_token = expo_token("bob"), expo_token("cat")
    register(push_server, "bob", bob_token)
    register(push_server, "cat", cat_token)
    bob = await Client.connect(push_server, "bob")
    send(push_server, "ann", cid, "who is here?")
    expo.wait_for(1)
    settle()
    assert to(expo, bob_token) == []
    assert len(to(expo, cat_token)) == 1
    await bob.close()


async def test_a_user_who_just_left_is_pushed_after_the_grace(
    push_server: ServerProcess, expo: Stub
) -> None:
    cid = open_direct(push_server, "ann", "bob")
    token = expo_token("bob")
    register(push_server, "bob", token)
    bob = await Client.connect(push_server, "bob")
    await bob.close()  # still online for GRACE seconds
    send(push_server, "ann", cid, "did you go?")
    settle()
    assert len(to(expo, token)) == 1


def test_muted_and_mentions_only(push_server: ServerProcess, expo: Stub) -> None:
    cid = create_group(push_server, "ann", ["bob", "cat"])
    bob_token, cat_token = expo_token("bob"), expo_token("cat")
    register(push_server, "bob", bob_token)
    register(push_server, "cat", cat_token)
    url = f"{push_server.url}/api/v1/conversations/{cid}/notifications"
    r = httpx.put(url, headers=auth("bob"), json={"level": "none"})
    assert r.status_code == 200, r.text
    assert r.json()["notifications"] == {"conversation_id": cid, "level": "none", "until": None}
    r = httpx.put(url, headers=auth("cat"), json={"level": "mentions"})
    assert r.status_code == 200, r.text
    send(push_server, "ann", cid, "nobody in particular")
    settle()
    assert to(expo, bob_token) == [] and to(expo, cat_token) == []
    mention = send(push_server, "ann", cid, "over to you @cat.")
    settle()
    assert [p["data"]["message_id"] for p in to(expo, cat_token)] == [mention["id"]]
    own = send(push_server, "cat", cid, "my question")
    reply = send(push_server, "ann", cid, "an answer", reply_to=own["id"])
    settle()
    assert [p["data"]["message_id"] for p in to(expo, cat_token)] == [mention["id"], reply["id"]]
    assert to(expo, bob_token) == []


def test_a_mute_until_a_time_ends_then(push_server: ServerProcess, expo: Stub) -> None:
    cid = open_direct(push_server, "ann", "bob")
    token = expo_token("bob")
    register(push_server, "bob", token)
    end = int(time.time()) + 4
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))
    r = httpx.put(
        f"{push_server.url}/api/v1/conversations/{cid}/notifications",
        headers=auth("bob"),
        json={"level": "none", "until": until},
    )
    assert r.status_code == 200, r.text
    send(push_server, "ann", cid, "muted now")
    settle()
    assert to(expo, token) == []
    time.sleep(max(0.0, end - time.time() + 0.3))
    send(push_server, "ann", cid, "heard now")
    settle()
    assert [p["body"] for p in to(expo, token)] == ["heard now"]


def test_do_not_disturb_and_blocks_silence_pushes(push_server: ServerProcess, expo: Stub) -> None:
    cid = create_group(push_server, "ann", ["bob", "cat"])
    token = expo_token("bob")
    register(push_server, "bob", token)
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    url = push_server.url + "/api/v1/push/do-not-disturb"
    r = httpx.put(url, headers=auth("bob"), json={"until": until})
    assert r.status_code == 200, r.text
    assert r.json()["do_not_disturb"]["until"].startswith(until[:19])
    send(push_server, "ann", cid, "during dnd")
    settle()
    assert to(expo, token) == []
    r = httpx.put(url, headers=auth("bob"), json={"until": None})
    assert r.json()["do_not_disturb"] == {"until": None}
    r = httpx.post(f"{push_server.url}/api/v1/blocks/cat", headers=auth("bob"))
    assert r.status_code == 200, r.text
    send(push_server, "cat", cid, "from someone bob blocked")
    settle()
    assert to(expo, token) == []
    send(push_server, "ann", cid, "after dnd")
    settle()
    assert [p["body"] for p in to(expo, token)] == ["after dnd"]


def test_reading_elsewhere_first_cancels_the_push(
    tmp_path: Path, expo: Stub, fresh_server: ServerProcess
) -> None:
    fresh_server.env.update(push_env(expo, HUBBUB_PUSH_WINDOW="2"))
    fresh_server.start()
    cid = open_direct(fresh_server, "ann", "bob")
    token = expo_token("bob")
    register(fresh_server, "bob", token)
    message = send(fresh_server, "ann", cid, "read me on the laptop")
    r = httpx.post(
        f"{fresh_server.url}/api/v1/conversations/{cid}/read",
        headers=auth("bob"),
        json={"seq": message["seq"]},
    )
    assert r.status_code == 200, r.text
    time.sleep(2 + SETTLED)
    assert to(expo, token) == []
    send(fresh_server, "ann", cid, "and this one unread")
    time.sleep(2 + SETTLED)
    assert [p["body"] for p in to(expo, token)] == ["and this one unread"]


def test_outage_then_recovery_delivers_every_push_once(
    push_server: ServerProcess, expo: Stub
) -> None:
    cid = open_direct(push_server, "ann", "bob")
    token = expo_token("bob")
    register(push_server, "bob", token)
    expo.fail(4, 500)
    expo.fail(3, 429, retry_after="1")
    sent = []
    for i in range(5):
        sent.append(send(push_server, "ann", cid, f"during the outage {i}"))
        time.sleep(WINDOW * 2)
    expo.wait_for(1, timeout=30)
    settle()
    pushes = to(expo, token)
    assert len(pushes) >= 1
    ids = [p["data"]["push_id"] for p in pushes]
    assert len(ids) == len(set(ids)), "a push was delivered twice"
    told = {p["data"]["message_id"] for p in pushes}
    # Every message is covered by exactly one push (some collapsed while retried).
    assert sent[-1]["id"] in told
    assert sum(p["data"]["count"] for p in pushes) == len(sent)
    failed = [r for r in expo.requests if r["status"] != 200]
    assert len(failed) == 7
    metrics = httpx.get(push_server.url + "/metrics").text
    assert 'hubbub_pushes_total{result="retried"}' in metrics


def test_device_not_registered_removes_the_device(push_server: ServerProcess, expo: Stub) -> None:
    cid = create_group(push_server, "ann", ["bob"])
    gone, kept = expo_token("old-phone"), expo_token("new-phone")
    register(push_server, "bob", gone)
    register(push_server, "bob", kept)
    expo.gone.add(gone)
    send(push_server, "ann", cid, "one")
    expo.wait_for(1)
    settle()
    r = httpx.get(push_server.url + "/api/v1/push/devices", headers=auth("bob"))
    assert [d["token"] for d in r.json()["devices"]] == [kept]
    send(push_server, "ann", cid, "two")
    expo.wait_for(2)
    settle()
    assert to(expo, gone) == []
    assert len(to(expo, kept)) == 2


def test_a_receipt_saying_not_registered_removes_the_device(
    fresh_server: ServerProcess, expo: Stub
) -> None:
    fresh_server.env.update(push_env(expo, HUBBUB_EXPO_RECEIPT_DELAY="0.5"))
    fresh_server.start()
    cid = open_direct(fresh_server, "ann", "bob")
    token = expo_token("bob")
    register(fresh_server, "bob", token)
    expo.throttled_in_receipts.add(token)
    send(fresh_server, "ann", cid, "accepted, slowed down, then not delivered")
    expo.wait_for(2)  # the receipt asked to slow down: sent again
    expo.gone_in_receipts.add(token)
    deadline = time.monotonic() + 15
    devices: list[Any] = [None]
    while devices and time.monotonic() < deadline:
        time.sleep(0.3)
        devices = httpx.get(fresh_server.url + "/api/v1/push/devices", headers=auth("bob")).json()[
            "devices"
        ]
    assert devices == []
    assert any(r["path"] == pushstub.RECEIPTS_PATH for r in expo.requests)


def test_webhook_is_signed_and_410_removes_the_device(
    push_server: ServerProcess, expo: Stub, hook: Stub
) -> None:
    cid = open_direct(push_server, "ann", "bob")
    fcm, stale = "fcm-token-" + new_id(), "fcm-stale-" + new_id()
    register(push_server, "bob", fcm, provider="webhook")
    stale_id = register(push_server, "bob", stale, provider="webhook")
    hook.gone.add(stale)
    hook.fail(1, 503)
    message = send(push_server, "ann", cid, "via the app's backend")
    hook.wait_for(1)
    settle()
    bodies = to(hook, fcm)
    assert len(bodies) == 1  # the 503 was retried; the stub checked every signature
    body = bodies[0]
    assert body["user_id"] == "bob"
    assert body["notification"]["title"] == "ann"
    assert body["notification"]["body"] == "via the app's backend"
    assert body["notification"]["collapse_id"] == cid
    assert body["data"]["message_id"] == message["id"]
    signed = [r for r in hook.requests if r["status"] == 200]
    assert signed[0]["headers"]["Hubbub-Push-Id"] == body["id"]
    assert all(r["status"] != 401 for r in hook.requests)
    devices = httpx.get(push_server.url + "/api/v1/push/devices", headers=auth("bob")).json()
    assert stale_id not in [d["id"] for d in devices["devices"]]


def test_a_forged_signature_is_refused_by_the_recipe(hook: Stub) -> None:
    r = httpx.post(
        hook.url + "/hook",
        content=b'{"id":"x"}',
        headers={"Hubbub-Timestamp": str(int(time.time())), "Hubbub-Signature": "v1=00"},
    )
    assert r.status_code == 401


def test_sigkill_with_pushes_pending_loses_none_and_doubles_none(
    fresh_server: ServerProcess, expo: Stub
) -> None:
    fresh_server.env.update(push_env(expo, HUBBUB_PUSH_LEASE="1"))
    fresh_server.start()
    cid = open_direct(fresh_server, "ann", "bob")
    token = expo_token("bob")
    register(fresh_server, "bob", token)
    expo.fail(1000, 503)  # nothing gets through: every push stays in the outbox
    sent = []
    for i in range(4):
        sent.append(send(fresh_server, "ann", cid, f"before the crash {i}"))
        time.sleep(WINDOW * 2)
    time.sleep(1)
    fresh_server.kill()
    with expo.lock:
        expo.failures.clear()
    fresh_server.start()
    expo.wait_for(1, timeout=20)
    settle()
    pushes = to(expo, token)
    ids = [p["data"]["push_id"] for p in pushes]
    assert len(ids) == len(set(ids))
    assert sum(p["data"]["count"] for p in pushes) == len(sent)
    assert sent[-1]["id"] in {p["data"]["message_id"] for p in pushes}


def test_devices_are_the_callers_own(push_server: ServerProcess) -> None:
    token = expo_token("shared")
    first = register(push_server, "ann", token)
    again = register(push_server, "ann", token)
    assert first == again  # idempotent per token
    moved = register(push_server, "bob", token)  # the phone changed hands
    assert moved == first
    listed = httpx.get(push_server.url + "/api/v1/push/devices", headers=auth("ann")).json()
    assert listed["devices"] == []
    r = httpx.delete(f"{push_server.url}/api/v1/push/devices/{first}", headers=auth("ann"))
    assert r.status_code == 404
    r = httpx.delete(f"{push_server.url}/api/v1/push/devices/{first}", headers=auth("bob"))
    assert r.status_code == 200
    listed = httpx.get(push_server.url + "/api/v1/push/devices", headers=auth("bob")).json()
    assert listed["devices"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "expo", "token": "not-an-expo-token", "platform": "ios"},
        {"provider": "apns", "token": "x", "platform": "ios"},
        {"provider": "expo", "token": "ExponentPushToken[x]", "platform": "windows"},
        {"provider": "expo", "token": "ExponentPushToken[x]", "platform": "ios", "extra": 1},
        {"provider": "expo", "platform": "ios"},
    ],
)
def test_bad_device_registrations_are_refused(push_server: ServerProcess, body: Any) -> None:
    r = httpx.post(push_server.url + "/api/v1/push/devices", headers=auth("ann"), json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid"


def test_expo_batches_hold_one_app_each(push_server: ServerProcess, expo: Stub) -> None:
    cid = open_direct(push_server, "ann", "bob")
    for app in ("com.example.one", "com.example.two"):
        register(push_server, "bob", expo_token(app), app_id=app)
    send(push_server, "ann", cid, "to both phones")
    expo.wait_for(2)
    sends = [r for r in expo.requests if r["path"] == pushstub.SEND_PATH]
    assert sorted(len(r["body"]) for r in sends) == [1, 1]
