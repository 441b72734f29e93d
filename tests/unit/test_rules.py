"""The chat's rules (hubbub/rules.py), decided without a database."""

from __future__ import annotations

import pytest

from hubbub import rules
from hubbub.errors import Forbidden, Invalid, NotFound, TooLarge
from hubbub.models import Message

URL = "/files/{id}"


def message(sender: str = "a", kind: str = "text", deleted: bool = False) -> Message:
    return Message(
        id="m_1",
        conversation_id="c_1",
        seq=1,
        sender_id=sender,
        sender_name=None,
        kind=kind,
        body="hi",
        client_msg_id="k",
        reply_to=None,
        created_at="2026-01-01T00:00:00.000Z",
        deleted_at="2026-01-01T00:00:01.000Z" if deleted else None,
    )


def test_only_members_reach_a_conversation() -> None:
    assert rules.member(("group", "admin")) == ("group", "admin")
    with pytest.raises(NotFound):
        rules.member(None)
    with pytest.raises(Forbidden):
        rules.member(("group", None))


def test_sending_into_a_blocked_direct_conversation_is_refused() -> None:
    rules.may_send(("direct", "member"), blocked=False)
    rules.may_send(("group", "member"), blocked=True)  # blocks stop direct messages only
    with pytest.raises(Forbidden, match="blocked"):
        rules.may_send(("direct", "member"), blocked=True)
    with pytest.raises(Forbidden, match="not a member"):
        rules.may_send(("group", None), blocked=False)


def test_a_reply_stays_in_its_conversation() -> None:
    rules.reply_target("c_1", "c_1")
    for elsewhere in ("c_2", None):
        with pytest.raises(Invalid):
            rules.reply_target("c_1", elsewhere)


def test_attachments_are_the_senders_own_and_images_are_images() -> None:
    found = {"u_1": ("a.png", "image/png", 10), "u_2": ("b.pdf", "application/pdf", 20)}
    files = rules.attachments("file", ["u_2", "u_1"], found, URL)
    assert [(f.id, f.name, f.size, f.url) for f in files] == [
        ("u_2", "b.pdf", 20, "/files/u_2"),
        ("u_1", "a.png", 10, "/files/u_1"),
    ]
    assert [f.id for f in rules.attachments("image", ["u_1"], found, URL)] == ["u_1"]
    with pytest.raises(Invalid, match="image uploads only"):
        rules.attachments("image", ["u_1", "u_2"], found, URL)
    with pytest.raises(Invalid, match="unknown upload 'u_3'"):
        rules.attachments("file", ["u_1", "u_3"], found, URL)


def test_edits_are_the_senders_and_never_of_system_messages() -> None:
    rules.may_edit("a", message("a"))
    with pytest.raises(Forbidden, match="only the sender"):
        rules.may_edit("b", message("a"))
    with pytest.raises(Forbidden, match="system"):
        rules.may_edit("a", message("a", kind="system"))


def test_deleted_or_missing_messages_are_not_found() -> None:
    assert rules.live(message()).id == "m_1"
    with pytest.raises(NotFound, match="deleted"):
        rules.live(message(deleted=True))
    with pytest.raises(NotFound, match="no such message"):
        rules.live(None)


@pytest.mark.parametrize(
    ("user", "kind", "role", "allowed"),
    [
        ("a", "direct", "member", True),  # the sender
        ("a", "group", "member", True),
        ("b", "group", "owner", True),
        ("b", "room", "admin", True),
        ("b", "group", "member", False),
        ("b", "direct", "member", False),
        ("b", "direct", "owner", False),  # no moderators in direct conversations
    ],
)
def test_who_may_delete(user: str, kind: str, role: str, allowed: bool) -> None:
    if allowed:
        rules.may_delete(user, message("a"), kind, role)
    else:
        with pytest.raises(Forbidden):
            rules.may_delete(user, message("a"), kind, role)


def test_reactions_are_capped_per_user_and_message() -> None:
    rules.may_react(rules.MAX_REACTIONS_PER_USER - 1)
    with pytest.raises(Invalid, match=str(rules.MAX_REACTIONS_PER_USER)):
        rules.may_react(rules.MAX_REACTIONS_PER_USER)


def test_moderation_takes_a_role_and_a_group() -> None:
    rules.may_moderate("group", "admin")
    rules.may_moderate("room", "owner", ("owner",))
    with pytest.raises(Forbidden, match="only a owner"):
        rules.may_moderate("group", "admin", ("owner",))
    with pytest.raises(Forbidden, match="only a owner or admin"):
        rules.may_moderate("group", "member")
    with pytest.raises(Forbidden, match="direct"):
        rules.may_moderate("direct", "owner")


def test_leaving_and_removing() -> None:
    rules.may_leave("group")
    with pytest.raises(Forbidden, match="hide it"):
        rules.may_leave("direct")
    rules.may_remove("owner", "admin")
    rules.may_remove("admin", "member")
    with pytest.raises(Forbidden, match="members only"):
        rules.may_remove("admin", "admin")
    with pytest.raises(Forbidden, match="members only"):
        rules.may_remove("admin", "owner")
    with pytest.raises(NotFound):
        rules.may_remove("owner", None)
    assert rules.reason(None) == "left" and rules.reason("o") == "removed"


def test_joining_keeps_the_member_limit_and_skips_members() -> None:
    assert rules.joining(["a", "b"], ["c", "a", "c", "d"], 4) == ["c", "d"]
    assert rules.joining(["a"], ["a"], 1) == []
    with pytest.raises(TooLarge, match="at most 3"):
        rules.joining(["a", "b"], ["c", "d"], 3)


def test_rooms_are_joined_by_anyone_and_an_empty_one_is_taken_over() -> None:
    assert rules.room_joiner_role("room", [], "a", 10) == "owner"
    assert rules.room_joiner_role("room", ["o"], "a", 10) == "member"
    assert rules.room_joiner_role("room", ["o", "a"], "a", 2) is None  # already in
    with pytest.raises(TooLarge):
        rules.room_joiner_role("room", ["o", "p"], "a", 2)
    for kind in ("group", "direct", None):
        with pytest.raises(NotFound, match="no such room"):
            rules.room_joiner_role(kind, [], "a", 10)


def test_the_heir_is_the_longest_standing_admin_else_member() -> None:
    assert rules.heir([]) is None
    assert rules.heir([("m1", "member", 1), ("a2", "admin", 5), ("a1", "admin", 5)]) == "a1"
    assert rules.heir([("m2", "member", 2), ("m1", "member", 2), ("m0", "member", 3)]) == "m1"


def test_role_changes_and_ownership_transfer() -> None:
    assert rules.role_changes("o", "a", "member", "admin") == [("a", "admin")]
    assert rules.role_changes("o", "a", "admin", "admin") == []
    assert rules.role_changes("o", "a", "member", "owner") == [("a", "owner"), ("o", "admin")]
    with pytest.raises(NotFound):
        rules.role_changes("o", "x", None, "admin")
    with pytest.raises(Invalid, match="transfer"):
        rules.role_changes("o", "o", "owner", "admin")
