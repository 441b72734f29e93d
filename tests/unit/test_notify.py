"""The push rules (service/notify.py): what a push tells, and how retries space out."""

from __future__ import annotations

from hubbub.models import Device
from hubbub.service import notify
from hubbub.store.push import Due, Noted

NOW = 1_700_000_000_000
PHONE = Device(
    id="d1",
    provider="expo",
    token="ExponentPushToken[x]",
    platform="ios",
    app_id=None,
    created_at="",
    updated_at="",
)


def noted(seq: int, sender: str = "ann", body: str = "hi", **kw: object) -> Noted:
    fields: dict[str, object] = {
        "id": f"m{seq}",
        "seq": seq,
        "sender_id": sender,
        "sender_name": sender.title(),
        "kind": "text",
        "body": body,
        "replies_to_recipient": False,
        **kw,
    }
    return Noted(**fields)  # type: ignore[arg-type]


def due(*messages: Noted, **kw: object) -> Due:
    fields: dict[str, object] = {
        "id": "po1",
        "user_id": "bob",
        "conversation_id": "c1",
        "last_seq": max((m.seq for m in messages), default=0),
        "created_at": NOW,
        "rechecked": False,
        "member": True,
        "messages": sorted(messages, key=lambda m: -m.seq),
        "devices": [PHONE],
        "badge": 5,
        **kw,
    }
    return Due(**fields)  # type: ignore[arg-type]


def test_mentions_are_the_user_id_as_a_word() -> None:
    assert notify.mentions("hey @bob", "bob")
    assert notify.mentions("@bob, look", "bob")
    assert notify.mentions("(@bob)", "bob")
    assert not notify.mentions("hey @bobby", "bob")
    assert not notify.mentions("mail bob@example.com", "bob")
    assert not notify.mentions("hey bob", "bob")
    assert notify.mentions("ping @u.1+x", "u.1+x")  # ids with regex characters


def test_levels_dnd_blocks_and_devices_decide() -> None:
    row = due(noted(1), noted(2, "cat"))
    assert [m.seq for m in notify.notable(row, NOW)] == [2, 1]
    assert notify.notable(due(noted(1), level="none"), NOW) == []
    assert notify.notable(due(noted(1), level="none", level_until=NOW), NOW) != []  # ended
    assert notify.notable(due(noted(1), dnd_until=NOW + 1), NOW) == []
    assert notify.notable(due(noted(1), dnd_until=NOW), NOW) != []
    assert notify.notable(due(noted(1), blocked={"ann"}), NOW) == []
    assert notify.notable(due(noted(1), devices=[]), NOW) == []
    assert notify.notable(due(noted(1), member=False), NOW) == []
    mentions = due(
        noted(1, body="plain"),
        noted(2, body="@bob look"),
        noted(3, replies_to_recipient=True),
        level="mentions",
    )
    assert [m.seq for m in notify.notable(mentions, NOW)] == [3, 2]


def test_the_notice_of_one_message_and_of_a_burst() -> None:
    one = due(noted(7, body="  hello\n there "), kind="direct")
    notice = notify.notice(one, one.messages, preview=True)
    assert (notice.title, notice.body, notice.badge) == ("Ann", "hello there", 5)
    assert notice.collapse_id == "c1"
    assert notice.data == {
        "type": "message",
        "conversation_id": "c1",
        "message_id": "m7",
        "seq": 7,
        "count": 1,
    }
    burst = due(noted(1), noted(2, body="last"), kind="group", title="Team")
    notice = notify.notice(burst, burst.messages, preview=True)
    assert (notice.title, notice.body) == ("Ann in Team", "2 new messages · last")
    private = notify.notice(burst, burst.messages, preview=False)
    assert private.body == "2 new messages"
    assert notify.notice(one, one.messages, preview=False).body == "New message"
    photo = due(noted(1, body="", kind="image"))
    assert notify.notice(photo, photo.messages, preview=True).body == "sent a photo"
    system = due(noted(1, "system", sender_name=None), kind="group", title="Team")
    assert notify.notice(system, system.messages, preview=True).title == "Team"
    system.title = None
    assert notify.notice(system, system.messages, preview=True).title == notify.SYSTEM_TITLE
    long = due(noted(1, body="x" * 500))
    assert len(notify.notice(long, long.messages, preview=True).body) == notify.SNIPPET


def test_backoff_doubles_with_jitter_up_to_the_cap_and_honours_retry_after() -> None:
    for attempts in range(12):
        top = min(60.0, 2.0 * 2**attempts)
        for _ in range(20):
            delay = notify.backoff(attempts, None, 2.0, 60.0)
            assert top / 2 <= delay <= top
    assert notify.backoff(0, 30.0, 1.0, 60.0) == 30.0
    assert notify.backoff(1000, None, 1.0, 60.0) <= 60.0
