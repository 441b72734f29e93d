"""ChatService over a real SQLite store and the memory broker: its rules and what it publishes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.auth import Identity
from hubbub.clock import iso_ms, now_ms
from hubbub.config import Limits
from hubbub.errors import Forbidden, HubbubError, Invalid, NotFound, TooLarge
from hubbub.models import Reaction, SendItem
from hubbub.protocol import events
from hubbub.service.chat import MAX_ATTACHMENTS, MAX_CLIENT_MSG_ID, MAX_EMOJI
from tests.unit.service_rig import Rig, decode, running, stored

LIMITS = Limits(max_body_chars=20, page_max=5, page_default=3, resume_limit=4)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(tmp_path, limits=LIMITS) as built:
        yield built


def refused(error: object, cls: type[HubbubError], code: str) -> None:
    """Exactly this error class (TooLarge is also an Invalid) with this code."""
    assert type(error) is cls, error
    assert isinstance(error, HubbubError) and error.code == code


async def last_seq(rig: Rig, cid: str) -> int:
    conversation = await rig.store.get_conversation(cid)
    assert conversation is not None
    return conversation.last_seq


# Validation -----------------------------------------------------------------


async def test_each_refused_item_gets_its_own_error_and_nothing_is_stored(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    rig.clear()
    many = tuple(f"u{i}" for i in range(MAX_ATTACHMENTS + 1))
    cases: list[tuple[SendItem, type[HubbubError], str]] = [
        (SendItem(d.id, "", "1"), Invalid, "invalid"),
        (SendItem(d.id, " \n\t ", "2"), Invalid, "invalid"),
        (SendItem(d.id, "x" * 21, "3"), TooLarge, "too_large"),
        (SendItem(d.id, "hi", "4", kind="system"), Invalid, "invalid"),
        (SendItem(d.id, "hi", "5", kind="sticker"), Invalid, "invalid"),
        (SendItem(d.id, "", "6", kind="image"), Invalid, "invalid"),
        (SendItem(d.id, "", "7", kind="file"), Invalid, "invalid"),
        (SendItem(d.id, "hi", "8", attachments=("u_1",)), Invalid, "invalid"),
        (SendItem(d.id, "x" * 21, "9", kind="file", attachments=("u_1",)), TooLarge, "too_large"),
        (SendItem(d.id, "", "10", kind="image", attachments=many), TooLarge, "too_large"),
        (SendItem(d.id, "hi", ""), Invalid, "invalid"),
        (SendItem(d.id, "hi", "c" * (MAX_CLIENT_MSG_ID + 1)), Invalid, "invalid"),
    ]
    results = await rig.chat.send("ann", [item for item, _, _ in cases])
    assert len(results) == len(cases)
    for result, (_item, cls, code) in zip(results, cases, strict=True):
        refused(result, cls, code)
    assert await last_seq(rig, d.id) == 0
    assert rig.deliveries == []


async def test_limits_are_inclusive(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    uploads = [await rig.upload("ann") for _ in range(MAX_ATTACHMENTS)]
    results = await rig.chat.send(
        "ann",
        [
            SendItem(d.id, "x" * 20, "a"),
            SendItem(d.id, "y", "c" * MAX_CLIENT_MSG_ID),
            SendItem(d.id, "", "b", kind="image", attachments=tuple(u.id for u in uploads)),
            SendItem(d.id, "z" * 20, "d", kind="file", attachments=(uploads[0].id,)),
        ],
    )
    messages = [stored(r)[0] for r in results]
    assert [m.seq for m in messages] == [1, 2, 3, 4]
    assert messages[0].body == "x" * 20
    assert messages[1].client_msg_id == "c" * MAX_CLIENT_MSG_ID
    assert [a.id for a in messages[2].attachments] == [u.id for u in uploads]
    assert messages[2].kind == "image" and messages[3].kind == "file"


async def test_send_one_raises_the_items_error(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    with pytest.raises(TooLarge):
        await rig.chat.send_one("ann", SendItem(d.id, "x" * 21, "1"))
    with pytest.raises(Forbidden):
        await rig.chat.send_one("cal", SendItem(d.id, "let me in", "1"))
    with pytest.raises(NotFound):
        await rig.chat.send_one("ann", SendItem("c_missing", "hello", "1"))
    assert await last_seq(rig, d.id) == 0


async def test_store_refusals_come_back_per_item_in_order(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    theirs = await rig.direct("cal", "dan")
    other = await rig.direct("ann", "eve")
    elsewhere = await rig.say("ann", other.id, "over there")
    bobs = await rig.upload("bob")
    rig.clear()
    results = await rig.chat.send(
        "ann",
        [
            SendItem(d.id, "one", "1"),
            SendItem(theirs.id, "not mine", "2"),
            SendItem("c_missing", "nowhere", "3"),
            SendItem(d.id, "", "4"),
            SendItem(d.id, "reply", "5", reply_to=elsewhere.id),
            SendItem(d.id, "", "6", kind="image", attachments=(bobs.id,)),
            SendItem(d.id, "two", "7"),
        ],
    )
    one, created_one = stored(results[0])
    refused(results[1], Forbidden, "forbidden")
    refused(results[2], NotFound, "not_found")
    refused(results[3], Invalid, "invalid")
    refused(results[4], Invalid, "invalid")  # reply_to in another conversation
    refused(results[5], Invalid, "invalid")  # someone else's upload
    two, created_two = stored(results[6])
    assert created_one and created_two and (one.seq, two.seq) == (1, 2)
    assert await last_seq(rig, theirs.id) == 0
    assert [(f["seq"], f["message"]["body"]) for _, f in rig.of_type("message.new")] == [
        (1, "one"),
        (2, "two"),
    ]


async def test_an_image_message_carries_image_uploads_only(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    pdf = await rig.upload("ann", b"%PDF", "application/pdf", "doc.pdf")
    with pytest.raises(Invalid):
        await rig.chat.send_one("ann", SendItem(d.id, "", "1", kind="image", attachments=(pdf.id,)))
    message, _ = await rig.chat.send_one(
        "ann", SendItem(d.id, "the doc", "2", kind="file", attachments=(pdf.id,))
    )
    (attachment,) = message.attachments
    assert (attachment.id, attachment.name, attachment.content_type, attachment.size) == (
        pdf.id,
        "doc.pdf",
        "application/pdf",
        4,
    )
    assert attachment.url == f"/api/v1/uploads/{pdf.id}"


async def test_sent_files_are_shared_with_members_while_the_message_stands(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    upload = await rig.upload("ann")
    with pytest.raises(Forbidden):
        await rig.uploads.get("bob", upload.id)  # not sent anywhere yet
    message, _ = await rig.chat.send_one(
        "ann", SendItem(d.id, "", "1", kind="image", attachments=(upload.id,))
    )
    found, path = await rig.uploads.get("bob", upload.id)
    assert found.id == upload.id and path.read_bytes() == b"png!"
    with pytest.raises(Forbidden):
        await rig.uploads.get("cal", upload.id)
    await rig.chat.delete("ann", message.id)
    with pytest.raises(Forbidden):
        await rig.uploads.get("bob", upload.id)
    assert (await rig.uploads.get("ann", upload.id))[0].owner_id == "ann"


# Idempotency ----------------------------------------------------------------


async def test_a_retried_client_msg_id_returns_the_original_and_publishes_nothing(
    rig: Rig,
) -> None:
    d = await rig.direct("ann", "bob")
    first, created = await rig.chat.send_one("ann", SendItem(d.id, "hello", "k1"))
    assert created
    rig.clear()
    again, created_again = await rig.chat.send_one("ann", SendItem(d.id, "other body", "k1"))
    assert not created_again
    assert (again.id, again.seq, again.body) == (first.id, first.seq, "hello")
    assert rig.deliveries == []
    assert await last_seq(rig, d.id) == 1
    # The key is per sender: bob's "k1" is a message of its own.
    bobs, bob_created = await rig.chat.send_one("bob", SendItem(d.id, "hello", "k1"))
    assert bob_created and bobs.seq == 2 and bobs.id != first.id


async def test_a_repeat_within_one_batch_is_stored_and_published_once(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    rig.clear()
    results = await rig.chat.send("ann", [SendItem(d.id, "x", "same"), SendItem(d.id, "y", "same")])
    (first, created), (second, created_second) = stored(results[0]), stored(results[1])
    assert created and not created_second and second.id == first.id and second.body == "x"
    assert [f["seq"] for _, f in rig.of_type("message.new")] == [1]


async def test_a_retry_is_recognised_before_any_access_check(rig: Rig) -> None:
    g = await rig.group("own", "ann")
    d = await rig.direct("ann", "bob")
    in_group = await rig.say("ann", g.id, "bye all", "g1")
    in_direct = await rig.say("ann", d.id, "hi bob", "d1")
    await rig.conversations.remove_member("ann", g.id, "ann")
    await rig.conversations.block("bob", "ann")
    rig.clear()
    again_group, created_g = await rig.chat.send_one("ann", SendItem(g.id, "bye all", "g1"))
    again_direct, created_d = await rig.chat.send_one("ann", SendItem(d.id, "hi bob", "d1"))
    assert (again_group.id, created_g) == (in_group.id, False)
    assert (again_direct.id, created_d) == (in_direct.id, False)
    with pytest.raises(Forbidden):
        await rig.chat.send_one("ann", SendItem(g.id, "new", "g2"))
    with pytest.raises(Forbidden):
        await rig.chat.send_one("ann", SendItem(d.id, "new", "d2"))
    assert rig.deliveries == []


# Publication ------------------------------------------------------------------


async def test_new_messages_go_to_each_conversations_members_in_seq_order(rig: Rig) -> None:
    one = await rig.group("ann", "bob", "cal")
    two = await rig.group("ann", "dan")
    rig.clear()
    results = await rig.chat.send(
        "ann",
        [SendItem(one.id, "a", "1"), SendItem(two.id, "b", "2"), SendItem(one.id, "c", "3")],
    )
    assert all(stored(r)[1] for r in results)
    published = [(d.conversation_id, d.seq, set(d.recipients)) for d in rig.deliveries]
    assert published == [
        (one.id, 1, {"ann", "bob", "cal"}),
        (two.id, 1, {"ann", "dan"}),
        (one.id, 2, {"ann", "bob", "cal"}),
    ]
    frame = decode(rig.deliveries[0])
    assert list(frame)[:3] == ["type", "conversation_id", "seq"]
    assert (frame["type"], frame["conversation_id"], frame["seq"]) == ("message.new", one.id, 1)
    assert frame["message"]["body"] == "a" and frame["message"]["sender_id"] == "ann"
    assert frame["message"]["client_msg_id"] == "1"
    assert rig.stream("dan", one.id) == []


async def test_times_come_from_the_injected_clock(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    rig.clock.advance(3600.5)
    message = await rig.say("ann", d.id, "later")
    assert message.created_at == iso_ms(now_ms(rig.clock))
    rig.clock.advance(60)
    edited = await rig.chat.edit("ann", message.id, "edited")
    assert edited.edited_at == iso_ms(now_ms(rig.clock))
    assert edited.created_at == message.created_at


async def test_a_sent_message_is_read_by_its_sender_without_a_receipt(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    await rig.say("ann", d.id, "one")
    await rig.say("ann", d.id, "two")
    assert await rig.chat.unread("ann") == {d.id: 0}
    assert await rig.chat.unread("bob") == {d.id: 2}
    assert rig.of_type("receipt") == []
    assert await rig.chat.mark("ann", d.id, "read", 2) is None  # already there


async def test_sending_stops_the_senders_typing_there(rig: Rig) -> None:
    g = await rig.group("ann", "bob")
    await rig.presence.typing("ann", g.id, "start", "conn-1")
    rig.clear()
    await rig.say("ann", g.id, "done typing")
    await rig.presence.drain()
    assert [(set(r), f["type"], f.get("state")) for r, f in rig.published()] == [
        ({"ann", "bob"}, "message.new", None),
        ({"bob"}, "typing", "stop"),
    ]
    assert await rig.presence.typists(g.id, "bob") == []
    rig.clear()
    await rig.say("ann", g.id, "again")  # not typing any more: no second stop
    await rig.presence.drain()
    assert rig.types("bob") == ["message.new"]


async def test_one_process_knows_the_recipients_before_the_commit(rig: Rig) -> None:
    elsewhere = rig.process()  # created through other services: not in this cache
    g = await elsewhere.conversations.create("ann", "group", "g", ["bob"])
    assert rig.fanout.cached(g.id) is None
    rig.hooked.calls.clear()
    await rig.say("ann", g.id, "first")
    assert rig.hooked.calls == ["member_ids", "append_messages"]
    rig.hooked.calls.clear()
    message = await rig.say("ann", g.id, "second")
    await rig.chat.edit("ann", message.id, "second!")
    await rig.chat.delete("ann", message.id)
    # Cached: nothing is awaited between a commit and its publication.
    assert rig.hooked.calls == ["append_messages", "edit_message", "delete_message"]
    assert [(set(r), f["seq"]) for r, f in rig.published()[-4:]] == [
        ({"ann", "bob"}, 1),
        ({"ann", "bob"}, 2),
        ({"ann", "bob"}, 3),
        ({"ann", "bob"}, 4),
    ]


async def test_several_processes_read_recipients_after_the_commit(tmp_path: Path) -> None:
    async with running(tmp_path, limits=LIMITS, shared=True) as rig:
        g = await rig.group("ann", "bob", "cal")
        await rig.say("ann", g.id, "warm up")
        assert rig.fanout.cached(g.id) is None  # nothing is cached with several processes
        other = rig.process()

        async def removed_elsewhere() -> None:
            await other.conversations.remove_member("ann", g.id, "cal")

        rig.hooked.before("append_messages", removed_elsewhere)
        rig.clear()
        message = await rig.say("ann", g.id, "after cal left")
        assert message.seq == 3
        (recipients, _frame) = rig.of_type("message.new")[0]
        assert set(recipients) == {"ann", "bob"}
        assert rig.stream("cal", g.id) == [(2, "member.left")]


async def test_a_refused_batch_reads_no_members_with_several_processes(tmp_path: Path) -> None:
    async with running(tmp_path, limits=LIMITS, shared=True) as rig:
        d = await rig.direct("ann", "bob")
        rig.hooked.calls.clear()
        rig.clear()
        (result,) = await rig.chat.send("cal", [SendItem(d.id, "nope", "1")])
        refused(result, Forbidden, "forbidden")
        assert rig.hooked.calls == ["append_messages"]
        assert rig.deliveries == []


# Edits and deletes --------------------------------------------------------------


async def test_the_sender_edits_and_members_get_the_new_version(rig: Rig) -> None:
    g = await rig.group("ann", "bob")
    message = await rig.say("ann", g.id, "frist")
    rig.clear()
    edited = await rig.chat.edit("ann", message.id, "first")
    assert (edited.id, edited.seq, edited.body) == (message.id, 1, "first")
    assert edited.edited_at is not None
    [(recipients, frame)] = rig.published()
    assert set(recipients) == {"ann", "bob"}
    assert (frame["type"], frame["seq"], frame["message"]["body"]) == ("message.edited", 2, "first")
    assert [v.body for v in await rig.chat.versions("bob", message.id)] == ["frist", "first"]
    assert (await rig.chat.message("bob", message.id)).body == "first"


async def test_edit_rules(rig: Rig) -> None:
    g = await rig.group("ann", "bob")
    other = await rig.group("cal")
    message = await rig.say("ann", g.id, "mine")
    theirs = await rig.say("cal", other.id, "cals")
    rig.clear()
    for body, cls in (("", Invalid), ("   ", Invalid), ("x" * 21, TooLarge)):
        with pytest.raises(cls) as caught:
            await rig.chat.edit("ann", message.id, body)
        assert type(caught.value) is cls
    with pytest.raises(Forbidden):
        await rig.chat.edit("bob", message.id, "bob was here")  # a member, not the sender
    with pytest.raises(Forbidden):
        await rig.chat.edit("ann", theirs.id, "not a member")
    with pytest.raises(NotFound):
        await rig.chat.edit("ann", "m_missing", "nothing")
    assert await last_seq(rig, g.id) == 1 and rig.deliveries == []


async def test_system_messages_are_not_editable(rig: Rig) -> None:
    g = await rig.group("ann", "bob")
    notice, _ = await rig.chat.post_system(SendItem(g.id, "welcome", "s1", kind="system"))
    with pytest.raises(Forbidden):
        await rig.chat.edit("ann", notice.id, "hijack")
    with pytest.raises(Forbidden):
        await rig.chat.edit("system", notice.id, "even by system")


async def test_delete_leaves_a_tombstone_and_drops_every_version(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    message = await rig.say("ann", d.id, "oops")
    await rig.chat.edit("ann", message.id, "oops again")
    rig.clear()
    gone = await rig.chat.delete("ann", message.id)
    assert (gone.id, gone.seq, gone.body) == (message.id, 1, "")
    assert gone.deleted_at is not None
    [(recipients, frame)] = rig.published()
    assert set(recipients) == {"ann", "bob"}
    assert (frame["type"], frame["seq"], frame["deleted_by"]) == ("message.deleted", 3, "ann")
    assert frame["message"]["body"] == ""
    assert await rig.chat.versions("bob", message.id) == []
    page = await rig.chat.history("bob", d.id)
    assert [(m.seq, m.body, m.deleted_at is not None) for m in page.messages] == [(1, "", True)]
    with pytest.raises(NotFound):
        await rig.chat.edit("ann", message.id, "back")
    with pytest.raises(NotFound):
        await rig.chat.delete("ann", message.id)
    with pytest.raises(NotFound):
        await rig.chat.react("bob", message.id, "👍", True)
    assert await rig.chat.unread("bob") == {d.id: 0}  # a deleted message is not unread


async def test_who_may_delete(rig: Rig) -> None:
    g = await rig.group("own", "adm", "m1", "m2")
    await rig.conversations.set_role("own", g.id, "adm", "admin")
    d = await rig.direct("m1", "m2")
    by_m1 = await rig.say("m1", g.id, "m1 says")
    by_adm = await rig.say("adm", g.id, "adm says")
    by_own = await rig.say("own", g.id, "own says")
    direct = await rig.say("m1", d.id, "private")
    with pytest.raises(Forbidden):
        await rig.chat.delete("m2", by_m1.id)  # a plain member
    with pytest.raises(Forbidden):
        await rig.chat.delete("m2", direct.id)  # no moderators in a direct conversation
    with pytest.raises(Forbidden):
        await rig.chat.delete("adm", direct.id)  # not a member there
    with pytest.raises(NotFound):
        await rig.chat.delete("m1", "m_missing")
    assert (await rig.chat.delete("adm", by_m1.id)).deleted_at is not None
    assert (await rig.chat.delete("own", by_adm.id)).deleted_at is not None
    assert (await rig.chat.delete("adm", by_own.id)).deleted_at is not None  # documented
    assert (await rig.chat.delete("m1", direct.id)).deleted_at is not None
    deleted = [(set(r), f["deleted_by"]) for r, f in rig.of_type("message.deleted")]
    members = {"own", "adm", "m1", "m2"}
    assert deleted == [(members, "adm"), (members, "own"), (members, "adm"), ({"m1", "m2"}, "m1")]


async def test_a_change_reaches_members_when_this_process_has_no_cached_list(rig: Rig) -> None:
    g = await rig.group("ann", "bob")
    message = await rig.say("ann", g.id, "typo")
    fresh = rig.process()  # same database, empty member cache (a restart, an eviction)
    assert fresh.fanout.cached(g.id) is None
    rig.clear()
    await fresh.chat.edit("ann", message.id, "fixed")
    [(recipients, frame)] = rig.published()
    assert set(recipients) == {"ann", "bob"} and frame["type"] == "message.edited"
    assert set(fresh.fanout.cached(g.id) or ()) == {"ann", "bob"}


# Messages from the backend --------------------------------------------------------


async def test_the_backend_posts_without_membership(rig: Rig) -> None:
    g = await rig.group("ann", "bob")
    rig.clear()
    notice, created = await rig.chat.post_system(SendItem(g.id, "maintenance", "s1", kind="system"))
    assert created and notice.sender_id == "system" and notice.kind == "system"
    plain, _ = await rig.chat.post_system(SendItem(g.id, "plain text", "s2"))
    assert plain.kind == "text" and plain.seq == 2
    again, created_again = await rig.chat.post_system(
        SendItem(g.id, "maintenance", "s1", kind="system")
    )
    assert (again.id, created_again) == (notice.id, False)
    assert [(set(r), f["seq"]) for r, f in rig.of_type("message.new")] == [
        ({"ann", "bob"}, 1),
        ({"ann", "bob"}, 2),
    ]
    with pytest.raises(Invalid):
        await rig.chat.post_system(SendItem(g.id, "", "s3", kind="image", attachments=("u",)))
    with pytest.raises(NotFound):
        await rig.chat.post_system(SendItem("c_missing", "nobody", "s4", kind="system"))
    with pytest.raises(Invalid):
        await rig.chat.post_system(SendItem(g.id, " ", "s5", kind="system"))


# Reactions ----------------------------------------------------------------------


@pytest.mark.parametrize("emoji", ["", "x" * (MAX_EMOJI + 1), "a b", "\t", "👍\n"])
async def test_malformed_emoji_are_refused(rig: Rig, emoji: str) -> None:
    d = await rig.direct("ann", "bob")
    message = await rig.say("ann", d.id, "react to me")
    rig.clear()
    with pytest.raises(Invalid) as caught:
        await rig.chat.react("bob", message.id, emoji, True)
    assert caught.value.code == "invalid"
    assert rig.deliveries == []


async def test_reactions_count_and_publish_only_changes(rig: Rig) -> None:
    g = await rig.group("ann", "bob", "cal")
    message = await rig.say("ann", g.id, "react to me")
    rig.clear()
    assert await rig.chat.react("bob", message.id, "👍", True) == (1, True)
    assert await rig.chat.react("bob", message.id, "👍", True) == (1, False)
    assert await rig.chat.react("cal", message.id, "👍", True) == (2, True)
    assert await rig.chat.react("cal", message.id, "x" * MAX_EMOJI, True) == (1, True)
    assert await rig.chat.react("bob", message.id, "👍", False) == (1, True)
    assert await rig.chat.react("bob", message.id, "👍", False) == (1, False)
    assert await rig.chat.react("ann", message.id, "🎉", False) == (0, False)
    frames = rig.of_type("reaction")
    assert [(f["user_id"], f["emoji"], f["action"], f["count"]) for _, f in frames] == [
        ("bob", "👍", "added", 1),
        ("cal", "👍", "added", 2),
        ("cal", "x" * MAX_EMOJI, "added", 1),
        ("bob", "👍", "removed", 1),
    ]
    assert all(set(r) == {"ann", "bob", "cal"} for r, _ in frames)
    assert all(f["conversation_id"] == g.id and f["message_id"] == message.id for _, f in frames)
    assert {d.seq for d in rig.deliveries} == {0}  # not a stream event: no seq
    assert await last_seq(rig, g.id) == 1
    seen_by_cal = await rig.chat.message("cal", message.id)
    by_emoji = {r.emoji: r for r in seen_by_cal.reactions}
    assert by_emoji == {
        "👍": Reaction(emoji="👍", count=1, me=True),
        "x" * MAX_EMOJI: Reaction(emoji="x" * MAX_EMOJI, count=1, me=True),
    }
    seen_by_ann = await rig.chat.message("ann", message.id)
    assert {(r.emoji, r.me) for r in seen_by_ann.reactions} == {("👍", False), ("x" * 32, False)}


async def test_reaction_access(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    message = await rig.say("ann", d.id, "private")
    with pytest.raises(Forbidden):
        await rig.chat.react("cal", message.id, "👀", True)
    with pytest.raises(NotFound):
        await rig.chat.react("ann", "m_missing", "👀", True)
    for i in range(20):
        await rig.chat.react("bob", message.id, f"e{i}", True)
    with pytest.raises(Invalid):
        await rig.chat.react("bob", message.id, "one-too-many", True)


# Search ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "offset"),
    [("", 5, 0), ("   ", 5, 0), ("q" * 201, 5, 0), ("ok", 0, 0), ("ok", 6, 0), ("ok", 5, -1)],
)
async def test_search_arguments_are_checked(rig: Rig, text: str, limit: int, offset: int) -> None:
    with pytest.raises(Invalid) as caught:
        await rig.chat.search("ann", text, None, limit, offset)
    assert type(caught.value) is Invalid


async def test_search_covers_current_text_in_the_callers_conversations(rig: Rig) -> None:
    mine = await rig.group("ann", "bob")
    also = await rig.direct("ann", "dan")
    theirs = await rig.group("cal")
    pie = await rig.say("bob", mine.id, "apple pie")
    edited = await rig.say("ann", mine.id, "banana split")
    await rig.chat.edit("ann", edited.id, "apple split")
    gone = await rig.say("ann", mine.id, "apple gone")
    await rig.chat.delete("ann", gone.id)
    juice = await rig.say("dan", also.id, "apple juice")
    await rig.say("cal", theirs.id, "apple tart")
    found = await rig.chat.search("ann", "  apple ", None, 5, 0)
    assert {m.id for m in found.results} == {pie.id, edited.id, juice.id}
    assert found.next_offset is None
    assert (await rig.chat.search("ann", "banana", None, 5, 0)).results == []
    assert (await rig.chat.search("ann", "gone", None, 5, 0)).results == []
    assert (await rig.chat.search("ann", "tart", None, 5, 0)).results == []
    only = await rig.chat.search("ann", "apple", also.id, 5, 0)
    assert [m.id for m in only.results] == [juice.id]
    first = await rig.chat.search("ann", "apple", None, 2, 0)
    rest = await rig.chat.search("ann", "apple", None, 2, 2)
    assert len(first.results) == 2 and first.next_offset == 2
    assert len(rest.results) == 1 and rest.next_offset is None
    assert {m.id for m in first.results + rest.results} == {pie.id, edited.id, juice.id}
    assert (await rig.chat.search("ann", "q" * 200, None, 5, 0)).results == []
    with pytest.raises(Forbidden):
        await rig.chat.search("ann", "apple", theirs.id, 5, 0)
    with pytest.raises(NotFound):
        await rig.chat.search("ann", "apple", "c_missing", 5, 0)


async def test_search_follows_membership_now(rig: Rig) -> None:
    g = await rig.group("own", "ann")
    await rig.say("own", g.id, "secret plan")
    assert len((await rig.chat.search("ann", "plan", None, 5, 0)).results) == 1
    await rig.conversations.remove_member("own", g.id, "ann")
    assert (await rig.chat.search("ann", "plan", None, 5, 0)).results == []


# History and single messages -------------------------------------------------------


async def test_history_pages_and_limits(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    for i in range(1, 6):
        await rig.say("ann", d.id, f"m{i}")
    latest = await rig.chat.history("bob", d.id)  # page_default is 3
    assert [m.seq for m in latest.messages] == [3, 4, 5] and latest.has_more
    older = await rig.chat.history("bob", d.id, before=3)
    assert [m.seq for m in older.messages] == [1, 2] and not older.has_more
    newer = await rig.chat.history("bob", d.id, after=3, limit=5)
    assert [m.seq for m in newer.messages] == [4, 5] and not newer.has_more
    everything = await rig.chat.history("bob", d.id, limit=5)
    assert [m.body for m in everything.messages] == ["m1", "m2", "m3", "m4", "m5"]
    assert {(r.user_id, r.read_seq) for r in everything.receipts} == {("ann", 5), ("bob", 0)}
    for kwargs in ({"limit": 0}, {"limit": 6}, {"before": -1}, {"after": -1}):
        with pytest.raises(Invalid):
            await rig.chat.history("bob", d.id, **kwargs)
    with pytest.raises(Forbidden):
        await rig.chat.history("cal", d.id)
    with pytest.raises(NotFound):
        await rig.chat.history("ann", "c_missing")


async def test_single_message_and_versions_need_membership(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    message = await rig.say("ann", d.id, "hello")
    assert (await rig.chat.message("bob", message.id)).body == "hello"
    assert [v.body for v in await rig.chat.versions("bob", message.id)] == ["hello"]
    with pytest.raises(Forbidden):
        await rig.chat.message("cal", message.id)
    with pytest.raises(Forbidden):
        await rig.chat.versions("cal", message.id)
    with pytest.raises(NotFound):
        await rig.chat.message("ann", "m_missing")
    with pytest.raises(NotFound):
        await rig.chat.versions("ann", "m_missing")


# Resume --------------------------------------------------------------------------


async def test_replay_statuses_and_events(rig: Rig) -> None:
    g = await rig.group("ann", "bob")
    d = await rig.direct("ann", "bob")
    theirs = await rig.group("cal")
    await rig.say("ann", g.id, "one")  # 1
    two = await rig.say("bob", g.id, "two")  # 2
    await rig.chat.edit("bob", two.id, "two!")  # 3
    await rig.conversations.add_members("ann", g.id, ["dan"])  # 4
    await rig.say("ann", g.id, "five")  # 5
    replays = await rig.chat.replay(
        "bob", {g.id: 1, d.id: 0, theirs.id: 0, "c_missing": 0, "c_x": 0}
    )
    by_id = {r.conversation_id: r for r in replays}
    assert [r.conversation_id for r in replays] == [g.id, d.id, theirs.id, "c_missing", "c_x"]
    ok = by_id[g.id]
    assert (ok.status, ok.last_seq) == ("ok", 5)
    assert [(e.seq, e.type) for e in ok.events] == [
        (2, "message.new"),
        (3, "message.edited"),
        (4, "member.joined"),
        (5, "message.new"),
    ]
    assert ok.events[0].message is not None and ok.events[0].message.body == "two!"
    assert ok.events[2].data is not None and ok.events[2].data["user_id"] == "dan"
    assert (by_id[d.id].status, by_id[d.id].last_seq, by_id[d.id].events) == ("ok", 0, [])
    for cid in (theirs.id, "c_missing"):
        assert (by_id[cid].status, by_id[cid].last_seq, by_id[cid].events) == (
            "unavailable",
            0,
            [],
        )
    (behind,) = await rig.chat.replay("bob", {g.id: 0})  # 5 events, resume_limit is 4
    assert (behind.status, behind.last_seq, behind.events) == ("too_far_behind", 5, [])
    (caught_up,) = await rig.chat.replay("bob", {g.id: 5})
    assert (caught_up.status, caught_up.events) == ("ok", [])


async def test_replay_brings_back_a_delete_as_a_tombstone(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    message = await rig.say("ann", d.id, "regret")
    await rig.chat.delete("ann", message.id)
    (replay,) = await rig.chat.replay("bob", {d.id: 0})
    assert [(e.seq, e.type) for e in replay.events] == [(1, "message.new"), (2, "message.deleted")]
    assert all(e.message is not None and e.message.body == "" for e in replay.events)


async def test_replay_arguments_are_checked(rig: Rig) -> None:
    with pytest.raises(TooLarge):
        await rig.chat.replay("ann", {f"c_{i}": 0 for i in range(1001)})
    with pytest.raises(Invalid) as caught:
        await rig.chat.replay("ann", {"c_1": 0, "c_2": -1})
    assert type(caught.value) is Invalid
    replays = await rig.chat.replay("ann", {f"c_{i}": 0 for i in range(1000)})
    assert len(replays) == 1000 and {r.status for r in replays} == {"unavailable"}


async def test_events_after_and_missed_for_gap_filling(rig: Rig) -> None:
    g = await rig.group("ann", "bob")
    await rig.say("ann", g.id, "one")
    await rig.conversations.rename("ann", g.id, "renamed")
    await rig.say("bob", g.id, "three")
    found = await rig.chat.events_after(g.id, 1, 10)
    assert [(e.seq, e.type) for e in found] == [(2, "conversation.renamed"), (3, "message.new")]
    assert [e.seq for e in await rig.chat.events_after(g.id, 0, 2)] == [1, 2]
    missed = await rig.chat.missed(g.id, 1, 10)
    assert [(m.conversation_id, m.seq, set(m.recipients)) for m in missed] == [
        (g.id, 2, {"ann", "bob"}),
        (g.id, 3, {"ann", "bob"}),
    ]
    assert [m.payload for m in missed] == [events.stream(e) for e in found]
    assert decode(missed[0])["title"] == "renamed"
    assert await rig.chat.missed(g.id, 3, 10) == []


# Receipts -------------------------------------------------------------------------


async def test_pointers_move_forward_only_and_members_hear_of_it(rig: Rig) -> None:
    g = await rig.group("ann", "bob", "cal")
    for i in range(3):
        await rig.say("ann", g.id, f"m{i}")
    rig.clear()
    first = await rig.chat.mark("bob", g.id, "delivered", 2)
    assert first is not None and (first.read_seq, first.delivered_seq) == (0, 2)
    read = await rig.chat.mark("bob", g.id, "read", 1)
    assert read is not None and (read.read_seq, read.delivered_seq) == (1, 2)
    assert await rig.chat.mark("bob", g.id, "read", 1) is None  # no move
    assert await rig.chat.mark("bob", g.id, "read", 0) is None  # never back
    assert await rig.chat.mark("bob", g.id, "delivered", 1) is None
    capped = await rig.chat.mark("bob", g.id, "read", 99)  # beyond the stream's end
    assert capped is not None and (capped.read_seq, capped.delivered_seq) == (3, 3)
    assert await rig.chat.mark("bob", g.id, "delivered", 3) is None  # read implies delivered
    frames = rig.of_type("receipt")
    assert [
        (f["user_id"], f["kind"], f["seq"], f["read_seq"], f["delivered_seq"]) for _, f in frames
    ] == [
        ("bob", "delivered", 2, 0, 2),
        ("bob", "read", 1, 1, 2),
        ("bob", "read", 3, 3, 3),
    ]
    assert all(set(r) == {"ann", "bob", "cal"} for r, _ in frames)
    assert all(f["conversation_id"] == g.id for _, f in frames)
    assert {d.seq for d in rig.deliveries} == {0}
    assert await rig.chat.unread("bob") == {g.id: 0}
    assert await rig.chat.unread("cal") == {g.id: 3}


async def test_mark_arguments_and_access(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    await rig.say("ann", d.id, "hi")
    rig.hooked.calls.clear()
    with pytest.raises(Invalid):
        await rig.chat.mark("bob", d.id, "read", -1)
    assert rig.hooked.calls == []  # refused before the store
    with pytest.raises(Forbidden):
        await rig.chat.mark("cal", d.id, "read", 1)
    with pytest.raises(NotFound):
        await rig.chat.mark("bob", "c_missing", "read", 1)


# Names -------------------------------------------------------------------------------


async def test_seen_records_a_tokens_name_when_it_changes(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")

    async def name_of(user: str) -> str | None:
        conversation = await rig.conversations.get(user, d.id)
        member = conversation.member(user)
        assert member is not None
        return member.name

    await rig.chat.seen(Identity("ann", None, 0))
    assert await name_of("ann") is None
    await rig.chat.seen(Identity("ann", "Ann", 0))
    assert await name_of("ann") == "Ann"
    assert (await rig.say("ann", d.id, "signed")).sender_name == "Ann"
    rig.hooked.calls.clear()
    await rig.chat.seen(Identity("ann", "Ann", 0))  # known: nothing written
    await rig.chat.seen(Identity("ann", None, 0))
    assert rig.hooked.calls == []
    await rig.chat.seen(Identity("ann", "Annie", 0))
    assert rig.hooked.calls == ["set_user_name"]
    assert await name_of("ann") == "Annie"
