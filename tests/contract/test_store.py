"""The store contract (store/base.py), run against every implementation."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from hubbub.clock import parse_iso_ms
from hubbub.errors import Forbidden, NotFound
from hubbub.models import Message, SendItem, StreamEvent
from hubbub.store import conversations
from hubbub.store.base import Store
from hubbub.store.conversations import SUMMARY_MEMBERS
from hubbub.store.sql import SQLStore
from hubbub.store.tx import Row, Tx
from tests.contract.conftest import StoreFactory

NOW = 1_700_000_000_000


async def send(
    store: Store, user: str, cid: str, body: str, cmid: str | None = None
) -> tuple[Message, bool]:
    """Append one message that the store must accept: ``(message, created)``."""
    (result,) = await store.append_messages(user, [SendItem(cid, body, cmid or body)], NOW)
    assert not isinstance(result, Exception), result
    return result


def data_of(event: StreamEvent) -> dict[str, Any]:
    """The fields of a membership event (which always has them)."""
    assert event.data is not None, event
    return event.data


async def test_direct_conversation_is_unique_per_pair(store: Store) -> None:
    first, created = await store.get_or_create_direct("a", "b", NOW)
    again, created_again = await store.get_or_create_direct("b", "a", NOW + 1)
    assert created and not created_again and first.id == again.id
    assert {m.user_id for m in first.members} == {"a", "b"}
    assert {m.role for m in first.members} == {"member"}
    # Ids that would collide if naively joined stay distinct pairs.
    x, _ = await store.get_or_create_direct("a:b", "c", NOW)
    y, _ = await store.get_or_create_direct("a", "b:c", NOW)
    assert x.id != y.id


async def test_concurrent_direct_creation_yields_one(store: Store) -> None:
    results = await asyncio.gather(*(store.get_or_create_direct("p", "q", NOW) for _ in range(20)))
    assert len({c.id for c, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_group_has_owner_and_deduplicated_members(store: Store) -> None:
    group = await store.create_group("own", "Team", ["m1", "m2", "m1", "own"], NOW)
    roles = {m.user_id: m.role for m in group.members}
    assert roles == {"own": "owner", "m1": "member", "m2": "member"}
    assert group.title == "Team" and group.kind == "group" and group.last_seq == 0
    assert sorted(await store.member_ids(group.id)) == ["m1", "m2", "own"]
    assert await store.member_ids("c_missing") == []
    assert await store.get_conversation("c_missing") is None


async def test_seqs_are_gap_free_under_concurrent_appends(store: Store) -> None:
    group = await store.create_group("u0", "g", [f"u{i}" for i in range(1, 8)], NOW)

    async def writer(n: int) -> list[int]:
        seqs = []
        for i in range(25):
            message, created = await send(store, f"u{n}", group.id, f"{n}/{i}")
            assert created
            seqs.append(message.seq)
        return seqs

    per_writer = await asyncio.gather(*(writer(n) for n in range(8)))
    assert sorted(s for seqs in per_writer for s in seqs) == list(range(1, 201))
    for seqs in per_writer:
        assert seqs == sorted(seqs)
    page = await store.list_messages("u0", group.id, before=None, after=0, limit=100)
    assert [m.seq for m in page.messages] == list(range(1, 101))


async def test_batch_is_stored_in_order_with_per_item_refusals(store: Store) -> None:
    mine, _ = await store.get_or_create_direct("a", "b", NOW)
    theirs, _ = await store.get_or_create_direct("c", "d", NOW)
    items = [
        SendItem(mine.id, "one", "1"),
        SendItem(theirs.id, "nope", "2"),
        SendItem("c_missing", "nope", "3"),
        SendItem(mine.id, "two", "4"),
        SendItem(mine.id, "one again", "1"),
    ]
    r1, r2, r3, r4, r5 = await store.append_messages("a", items, NOW)
    assert isinstance(r2, Forbidden) and isinstance(r3, NotFound)
    assert not isinstance(r1, Exception) and not isinstance(r4, Exception)
    assert not isinstance(r5, Exception)
    assert (r1[0].seq, r4[0].seq) == (1, 2) and r1[1] and r4[1]
    assert r5 == (r1[0], False)  # the retry returns the original, body and all
    assert (await store.get_conversation(theirs.id)).last_seq == 0  # type: ignore[union-attr]


async def test_idempotency_is_per_sender_and_conversation(store: Store) -> None:
    group = await store.create_group("a", "g", ["b"], NOW)
    other = await store.create_group("a", "h", ["b"], NOW)
    ma, _ = await send(store, "a", group.id, "x", "same")
    mb, created_b = await send(store, "b", group.id, "x", "same")
    mo, created_o = await send(store, "a", other.id, "x", "same")
    assert created_b and created_o and len({ma.id, mb.id, mo.id}) == 3


async def test_history_pages(store: Store) -> None:
    conv, _ = await store.get_or_create_direct("a", "b", NOW)
    for i in range(1, 11):
        await send(store, "a", conv.id, f"m{i}")
    latest = await store.list_messages("b", conv.id, before=None, after=None, limit=4)
    assert [m.seq for m in latest.messages] == [7, 8, 9, 10] and latest.has_more
    older = await store.list_messages("b", conv.id, before=3, after=None, limit=4)
    assert [m.seq for m in older.messages] == [1, 2] and not older.has_more
    newer = await store.list_messages("b", conv.id, before=None, after=8, limit=4)
    assert [m.seq for m in newer.messages] == [9, 10] and not newer.has_more
    between = await store.list_messages("b", conv.id, before=6, after=2, limit=2)
    assert [m.seq for m in between.messages] == [4, 5] and between.has_more
    empty = await store.list_messages("b", conv.id, before=3, after=2, limit=5)
    assert empty.messages == [] and not empty.has_more
    with pytest.raises(Forbidden):
        await store.list_messages("z", conv.id, before=None, after=None, limit=5)
    with pytest.raises(NotFound):
        await store.list_messages("a", "c_missing", before=None, after=None, limit=5)


async def test_conversation_list_and_unread(store: Store) -> None:
    d, _ = await store.get_or_create_direct("me", "you", NOW)
    g = await store.create_group("boss", "g", ["me"], NOW + 5)
    await send(store, "you", d.id, "1")
    await send(store, "you", d.id, "2")
    await send(store, "me", d.id, "3")
    await send(store, "you", d.id, "4")
    listed = await store.list_conversations("me")
    assert [c.id for c in listed] == [g.id, d.id]  # g was created later than any message
    by_id = {c.id: c for c in listed}
    assert by_id[d.id].unread_count == 1 and by_id[d.id].read_seq == 3
    last = by_id[d.id].last_message
    assert last is not None and last.body == "4"
    assert by_id[g.id].last_message is None and by_id[g.id].unread_count == 0
    assert [c.id for c in await store.list_conversations("you")] == [d.id]
    assert await store.list_conversations("nobody") == []


async def test_replay(store: Store) -> None:
    conv, _ = await store.get_or_create_direct("a", "b", NOW)
    for i in range(6):
        await send(store, "a", conv.id, f"m{i}")
    stranger, _ = await store.get_or_create_direct("c", "d", NOW)
    ok, missing, foreign = await store.replay(
        "b", {conv.id: 4, "c_missing": 0, stranger.id: 0}, limit=3
    )
    assert (ok.status, [m.seq for m in ok.events], ok.last_seq) == ("ok", [5, 6], 6)
    assert missing.status == "unavailable" and foreign.status == "unavailable"
    (behind,) = await store.replay("b", {conv.id: 0}, limit=3)
    assert (behind.status, behind.events, behind.last_seq) == ("too_far_behind", [], 6)
    caught_up = (await store.replay("b", {conv.id: 6}, limit=3))[0]
    assert (caught_up.status, caught_up.events) == ("ok", [])


async def test_everything_survives_reopening(store_factory: StoreFactory) -> None:
    first = store_factory()
    await first.open()
    conv, _ = await first.get_or_create_direct("a", "b", NOW)
    await first.set_user_name("a", "Ada", NOW)
    message, _ = await send(first, "a", conv.id, "kept", "k1")
    await first.close()

    second = store_factory()
    await second.open()
    try:
        again, created = await second.get_or_create_direct("b", "a", NOW)
        assert not created and again.id == conv.id and again.last_seq == 1
        assert {m.user_id: m.name for m in again.members} == {"a": "Ada", "b": None}
        assert await send(second, "a", conv.id, "kept", "k1") == (message, False)
        page = await second.list_messages("b", conv.id, before=None, after=None, limit=10)
        assert page.messages == [message]
    finally:
        await second.close()


async def test_every_change_takes_the_next_seq_and_replays(store: Store) -> None:
    group = await store.create_group("o", "g", ["a"], NOW)
    message, _ = await send(store, "o", group.id, "hello")
    edited = await store.edit_message("o", message.id, "hello!", NOW + 1)
    joined = await store.add_members("o", group.id, ["b"], 100, NOW + 2)
    renamed = await store.rename("o", group.id, "G", NOW + 3)
    deleted = await store.delete_message("o", message.id, NOW + 4)
    left = await store.remove_member("o", group.id, "a", NOW + 5)
    seqs = [
        message.seq,
        edited.seq,
        *(e.seq for e in joined + renamed),
        deleted.seq,
        *(e.seq for e in left),
    ]
    assert seqs == [1, 2, 3, 4, 5, 6]
    (replay,) = await store.replay("b", {group.id: 0}, limit=100)
    assert [e.type for e in replay.events] == [
        "message.new",
        "message.edited",
        "member.joined",
        "conversation.renamed",
        "message.deleted",
        "member.left",
    ]
    # Message events show the message as it is now: deleted, body gone.
    assert all(e.message is not None and e.message.body == "" for e in replay.events[:2])
    assert replay.events[5].data == {"user_id": "a", "by": "o", "reason": "removed"}
    assert await store.message_versions("b", message.id) == []
    # The removed member is out: no replay, no history.
    (gone,) = await store.replay("a", {group.id: 0}, limit=100)
    assert gone.status == "unavailable"
    with pytest.raises(Forbidden):
        await store.list_messages("a", group.id, before=None, after=None, limit=5)


async def test_pointers_only_move_forward(store: Store) -> None:
    conv, _ = await store.get_or_create_direct("a", "b", NOW)
    for i in range(3):
        await send(store, "a", conv.id, f"m{i}")
    receipt = await store.mark("b", conv.id, "delivered", 2)
    assert receipt is not None and (receipt.read_seq, receipt.delivered_seq) == (0, 2)
    receipt = await store.mark("b", conv.id, "read", 99)  # clamped to the stream's end
    assert receipt is not None and (receipt.read_seq, receipt.delivered_seq) == (3, 3)
    assert await store.mark("b", conv.id, "read", 1) is None
    assert await store.unread("b") == {conv.id: 0}
    with pytest.raises(Forbidden):
        await store.mark("z", conv.id, "read", 1)


async def test_blocks_refuse_direct_but_not_groups(store: Store) -> None:
    conv, _ = await store.get_or_create_direct("a", "b", NOW)
    group = await store.create_group("a", "g", ["b"], NOW)
    assert await store.block("a", "b", NOW) and not await store.block("a", "b", NOW)
    assert await store.blocked_by("a") == ["b"] and await store.blockers_of("b") == ["a"]
    refused, ok = await store.append_messages(
        "b", [SendItem(conv.id, "x", "1"), SendItem(group.id, "y", "2")], NOW
    )
    assert isinstance(refused, Forbidden) and not isinstance(ok, Exception)
    with pytest.raises(Forbidden):
        await store.get_or_create_direct("b", "a", NOW)
    assert await store.unblock("a", "b")
    assert not isinstance(
        (await store.append_messages("b", [SendItem(conv.id, "x", "3")], NOW))[0], Exception
    )


async def test_search_and_reactions(store: Store) -> None:
    conv, _ = await store.get_or_create_direct("a", "b", NOW)
    other, _ = await store.get_or_create_direct("c", "d", NOW)
    m1, _ = await send(store, "a", conv.id, "Coffee opening hours")
    await send(store, "c", other.id, "coffee for others")
    found = await store.search("b", "COFFEE", None, 10, 0)
    assert [m.id for m in found.results] == [m1.id] and found.next_offset is None
    assert await store.react("b", m1.id, "👍", True, NOW) == (conv.id, 1, True)
    assert await store.react("b", m1.id, "👍", True, NOW) == (conv.id, 1, False)
    page = await store.list_messages("b", conv.id, before=None, after=None, limit=5)
    assert [(r.emoji, r.count, r.me) for r in page.messages[0].reactions] == [("👍", 1, True)]
    assert await store.react("b", m1.id, "👍", False, NOW) == (conv.id, 0, True)


async def test_newcomers_start_caught_up_and_retries_survive_leaving(store: Store) -> None:
    group = await store.create_group("o", "g", ["a"], NOW)
    first, _ = await send(store, "a", group.id, "before b", "k1")
    await send(store, "o", group.id, "also before b")
    await store.add_members("o", group.id, ["b"], 100, NOW)
    assert (await store.unread("b"))[group.id] == 0
    await store.remove_member("a", group.id, "a", NOW)  # a leaves
    assert await send(store, "a", group.id, "before b", "k1") == (first, False)
    room = await store.create_group("r", "room", [], NOW, kind="room")
    await store.remove_member("r", room.id, "r", NOW)  # the room is empty now
    (joined,) = await store.join_room("x", room.id, 100, NOW)
    assert joined.data is not None and joined.data["role"] == "owner"


async def test_roles_are_set_by_the_owner_and_giving_owner_transfers(store: Store) -> None:
    group = await store.create_group("ow", "g", ["ad", "me"], NOW)
    events = await store.set_role("ow", group.id, "ad", "admin", NOW + 1)
    assert [(e.type, data_of(e)["user_id"], data_of(e)["role"]) for e in events] == [
        ("member.role_changed", "ad", "admin")
    ]
    assert events[0].seq == 1
    assert await store.set_role("ow", group.id, "ad", "admin", NOW + 2) == []  # no change
    with pytest.raises(Forbidden):
        await store.set_role("ad", group.id, "me", "admin", NOW + 3)  # admins may not
    with pytest.raises(NotFound):
        await store.set_role("ow", group.id, "stranger", "admin", NOW + 3)
    transfer = await store.set_role("ow", group.id, "me", "owner", NOW + 4)
    assert [(data_of(e)["user_id"], data_of(e)["role"]) for e in transfer] == [
        ("me", "owner"),
        ("ow", "admin"),
    ]
    assert [e.seq for e in transfer] == [2, 3]
    after = await store.get_conversation(group.id)
    assert after is not None
    assert {m.user_id: m.role for m in after.members} == {
        "ow": "admin",
        "ad": "admin",
        "me": "owner",
    }


async def test_rooms_are_listed_newest_activity_first_with_membership(store: Store) -> None:
    old = await store.create_group("ra", "old room", [], NOW, kind="room")
    new = await store.create_group("rb", "new room", [], NOW + 10, kind="room")
    await store.create_group("ra", "a group", ["rb"], NOW + 20)  # not a room
    rooms = await store.list_rooms("ra", 10, 0)
    assert [(r.id, r.title, r.member_count, r.joined) for r in rooms] == [
        (new.id, "new room", 1, False),
        (old.id, "old room", 1, True),
    ]
    assert [r.id for r in await store.list_rooms("ra", 1, 1)] == [old.id]
    joined = await store.join_room("ra", new.id, 100, NOW + 30)
    assert [e.type for e in joined] == ["member.joined"]
    assert await store.join_room("ra", new.id, 100, NOW + 31) == []  # already a member
    listed = {r.id: (r.member_count, r.joined) for r in await store.list_rooms("ra", 10, 0)}
    assert listed[new.id] == (2, True)


async def test_an_upload_is_for_its_owner_and_where_it_was_sent(store: Store) -> None:
    upload = await store.create_upload("u_file1", "up", "a.png", "image/png", 123, NOW)
    assert (upload.id, upload.owner_id, upload.name, upload.size) == ("u_file1", "up", "a.png", 123)
    assert (await store.get_upload("up", "u_file1")).content_type == "image/png"
    with pytest.raises(Forbidden):
        await store.get_upload("peer", "u_file1")  # not shared yet
    with pytest.raises(NotFound):
        await store.get_upload("up", "u_nothing")
    direct, _ = await store.get_or_create_direct("up", "peer", NOW)
    item = SendItem(direct.id, "", "with-file", kind="image", attachments=("u_file1",))
    (appended,) = await store.append_messages("up", [item], NOW + 1)
    assert not isinstance(appended, Exception), appended
    message, created = appended
    assert created
    assert (await store.get_upload("peer", "u_file1")).name == "a.png"
    with pytest.raises(Forbidden):
        await store.get_upload("outsider", "u_file1")
    await store.delete_message("up", message.id, NOW + 2)
    with pytest.raises(Forbidden):  # a deleted message shares it no longer
        await store.get_upload("peer", "u_file1")


async def test_blocks_are_listed_the_same_on_every_backend(store: Store) -> None:
    for blocked in ["zed", "amy", "kim"]:
        assert await store.block("bl", blocked, NOW)
    assert not await store.block("bl", "amy", NOW + 1)  # already
    assert await store.blocked_by("bl") == ["amy", "kim", "zed"]
    assert await store.block("cc", "amy", NOW)
    assert await store.blockers_of("amy") == ["bl", "cc"]
    assert await store.unblock("bl", "kim") and not await store.unblock("bl", "kim")
    assert await store.blocked_by("bl") == ["amy", "zed"]


async def test_users_names_last_seen_and_contacts(store: Store) -> None:
    await store.ping()
    direct, _ = await store.get_or_create_direct("ann", "bob", NOW)
    await store.create_group("ann", "team", ["cat"], NOW)
    await store.create_group("ann", "lobby", ["dan"], NOW, kind="room")
    assert sorted(await store.contacts("ann")) == ["bob", "cat"]  # rooms do not count
    assert await store.contacts("eve") == []
    await store.set_user_name("ann", "Ann", NOW)
    await store.set_user_name("ann", "Ann", NOW + 1)  # unchanged: nothing to write
    await store.set_last_seen("bob", NOW + 7)
    await store.set_last_seen("bob", NOW + 9)
    assert await store.last_seen(["bob", "ann", "nobody"]) == {
        "bob": NOW + 9,
        "ann": None,
        "nobody": None,
    }
    assert await store.last_seen([]) == {}
    message, _ = await send(store, "ann", direct.id, "hi")
    assert message.sender_name == "Ann"
    await store.set_user_name("ann", "Annie", NOW + 2)
    fetched = await store.get_message("bob", message.id)
    assert fetched.sender_name == "Annie" and fetched.body == "hi"


async def test_get_message_is_for_members_with_own_reactions(store: Store) -> None:
    conv, _ = await store.get_or_create_direct("a", "b", NOW)
    message, _ = await send(store, "a", conv.id, "hello")
    await store.react("b", message.id, "👍", True, NOW)
    for_b = await store.get_message("b", message.id)
    for_a = await store.get_message("a", message.id)
    assert [(r.count, r.me) for r in for_b.reactions] == [(1, True)]
    assert [(r.count, r.me) for r in for_a.reactions] == [(1, False)]
    with pytest.raises(Forbidden):
        await store.get_message("c", message.id)
    with pytest.raises(NotFound):
        await store.get_message("a", "m_missing")
    await store.delete_message("a", message.id, NOW)
    gone = await store.get_message("b", message.id)
    assert gone.deleted_at is not None and gone.body == "" and gone.reactions == []


async def test_hidden_conversations_leave_the_list_until_a_new_message(store: Store) -> None:
    conv, _ = await store.get_or_create_direct("a", "b", NOW)
    await send(store, "b", conv.id, "one")
    await store.set_hidden("a", conv.id, True)
    assert await store.list_conversations("a") == [] and await store.unread("a") == {}
    assert [c.id for c in await store.list_conversations("b")] == [conv.id]
    with pytest.raises(Forbidden):
        await store.set_hidden("c", conv.id, True)
    await send(store, "b", conv.id, "two")
    assert [c.id for c in await store.list_conversations("a")] == [conv.id]
    assert await store.unread("a") == {conv.id: 2}
    await store.set_hidden("b", conv.id, True)
    await send(store, "b", conv.id, "three")  # your own message shows it again, read
    assert (await store.list_conversations("b"))[0].unread_count == 0


async def test_events_after_carry_each_event_with_its_message(store: Store) -> None:
    group = await store.create_group("o", "g", ["a"], NOW)
    first, _ = await send(store, "a", group.id, "one")
    await store.rename("o", group.id, "renamed", NOW)
    await store.edit_message("a", first.id, "one, edited", NOW)
    events = await store.events_after(group.id, 0, 10)
    assert [(e.seq, e.type) for e in events] == [
        (1, "message.new"),
        (2, "conversation.renamed"),
        (3, "message.edited"),
    ]
    assert events[0].message is not None and events[0].message.body == "one, edited"
    assert events[1].message is None and events[1].data == {"title": "renamed", "by": "o"}
    assert [e.seq for e in await store.events_after(group.id, 1, 1)] == [2]
    assert await store.events_after(group.id, 3, 10) == []
    assert await store.events_after("c_missing", 0, 10) == []


async def test_conversation_list_carries_each_ones_members_and_last_message(
    store: Store,
) -> None:
    ids = []
    for n in range(6):
        group = await store.create_group("me", f"g{n}", [f"u{n}", f"v{n}"], NOW + n)
        for i in range(n):
            message, _ = await send(store, f"u{n}", group.id, f"g{n} #{i}")
        if n:
            await store.react("me", message.id, "👍", True, NOW)
        ids.append(group.id)
    listed = {c.id: c for c in await store.list_conversations("me")}
    for n, cid in enumerate(ids):
        summary = listed[cid]
        assert sorted(m.user_id for m in summary.members) == sorted(["me", f"u{n}", f"v{n}"])
        assert summary.unread_count == n
        if n == 0:
            assert summary.last_message is None
        else:
            assert summary.last_message is not None
            assert summary.last_message.body == f"g{n} #{n - 1}"
            assert [(r.emoji, r.me) for r in summary.last_message.reactions] == [("👍", True)]


async def test_conversation_ids_are_every_membership_hidden_or_not(store: Store) -> None:
    d, _ = await store.get_or_create_direct("me", "you", NOW)
    g = await store.create_group("boss", "g", ["me"], NOW)
    await store.create_group("boss", "other", ["you"], NOW)
    await store.set_hidden("me", d.id, True)
    found = await store.conversation_ids(["me", "you", "nobody"])
    assert sorted(found["me"]) == sorted([d.id, g.id]) and len(found["you"]) == 2
    assert "nobody" not in found
    await store.remove_member("me", g.id, "me", NOW + 1)
    assert await store.conversation_ids(["me"]) == {"me": [d.id]}
    assert await store.conversation_ids([]) == {}


async def test_the_conversation_list_shows_a_large_groups_first_members_and_its_count(
    store: Store,
) -> None:
    others = [f"u{n:02d}" for n in range(SUMMARY_MEMBERS + 5)]
    big = await store.create_group("boss", "big", others, NOW)
    await store.add_members("boss", big.id, ["me"], 1000, NOW + 1)  # joins last
    small = await store.create_group("me", "small", ["u00"], NOW + 2)
    listed = {c.id: c for c in await store.list_conversations("me")}
    shown = [m.user_id for m in listed[big.id].members]
    # The first to join (the creator with those added with it, by id), and the caller.
    assert shown == ([*["boss", *others][:SUMMARY_MEMBERS], "me"])
    assert listed[big.id].member_count == len(others) + 2
    assert [m.user_id for m in listed[small.id].members] == ["me", "u00"]
    assert listed[small.id].member_count == 2
    await store.remove_member("boss", big.id, "u03", NOW + 3)
    after = {c.id: c for c in await store.list_conversations("me")}[big.id]
    assert after.member_count == len(others) + 1
    assert "u03" not in [m.user_id for m in after.members]
    assert len(after.members) == SUMMARY_MEMBERS + 1
    # The conversation itself still lists everyone.
    assert len((await store.get_conversation(big.id)).members) == len(others) + 1  # type: ignore[union-attr]


async def test_the_conversation_list_takes_the_same_queries_for_any_count(store: Store) -> None:
    """A constant number of statements, however many conversations the user has."""
    if not isinstance(store, SQLStore):
        pytest.skip("counts the statements of the SQL stores")

    async def statements(user: str) -> int:
        async def listing(tx: Tx) -> int:
            counting = CountingTx(tx)
            await conversations.list_conversations(counting, user)
            return counting.count

        return await store.transaction(listing)

    for n in range(1, 11):
        group = await store.create_group("few" if n <= 2 else "many", f"g{n}", ["x"], NOW)
        await send(store, "x", group.id, f"hello {n}")
    assert await statements("few") == await statements("many")


class CountingTx:
    """A ``Tx`` that counts the statements run through it."""

    def __init__(self, inner: Tx) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.count = 0

    async def one(self, sql: str, *args: object) -> Row | None:
        self.count += 1
        return await self.inner.one(sql, *args)

    async def all(self, sql: str, *args: object) -> list[Row]:
        self.count += 1
        return await self.inner.all(sql, *args)

    async def value(self, sql: str, *args: object) -> Any:
        self.count += 1
        return await self.inner.value(sql, *args)

    async def run(self, sql: str, *args: object) -> int:
        self.count += 1
        return await self.inner.run(sql, *args)

    async def many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self.count += 1
        await self.inner.many(sql, rows)


def test_every_port_method_has_a_contract_test() -> None:
    """A method added to the store port without a contract test fails this test."""
    source = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    untested = [
        name
        for name, _ in inspect.getmembers(Store, inspect.isfunction)
        if not name.startswith("_")
        and name not in ("open", "close")  # every test opens and closes its store
        and f".{name}(" not in source
    ]
    assert untested == []


async def test_the_conversation_list_pages_by_position(store: Store) -> None:
    ids = []
    for n in range(7):
        group = await store.create_group("me", f"g{n}", ["x"], NOW + n % 3)  # ties on activity
        ids.append(group.id)
    everything = [c.id for c in await store.list_conversations("me")]
    assert sorted(everything) == sorted(ids)
    pages: list[list[str]] = []
    after: tuple[int, str] | None = None
    while True:
        page = await store.list_conversations("me", 3, after)
        if not page:
            break
        pages.append([c.id for c in page])
        last = page[-1]
        after = (parse_iso_ms(last.last_activity_at), last.id)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [cid for p in pages for cid in p] == everything
    assert await store.list_conversations("me", 0) == []
