"""ConversationService over a real SQLite store and the memory broker.

Rules (titles, user ids, roles, blocks), and what each change publishes to
whom: stream events go to the members at their point of the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hubbub.config import Limits
from hubbub.errors import Forbidden, HubbubError, Invalid, NotFound, TooLarge
from hubbub.models import Conversation, SendItem
from hubbub.service.conversations import MAX_TITLE, MAX_USER_ID
from tests.unit.service_rig import Rig, running

LIMITS = Limits(max_group_members=4)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(tmp_path, limits=LIMITS) as built:
        yield built


def roles(conversation: Conversation) -> dict[str, str]:
    return {m.user_id: m.role for m in conversation.members}


def exactly(error: BaseException, cls: type[HubbubError]) -> None:
    assert type(error) is cls, error


BAD_IDS: list[Any] = ["", "u" * (MAX_USER_ID + 1), "system", None, 7]


# Creating -------------------------------------------------------------------------


async def test_a_direct_conversation_is_opened_once_and_announced_once(rig: Rig) -> None:
    conversation, created = await rig.conversations.open_direct("ann", "bob")
    assert created and conversation.kind == "direct" and conversation.title is None
    assert roles(conversation) == {"ann": "member", "bob": "member"}
    [(recipients, frame)] = rig.published()
    assert set(recipients) == {"ann", "bob"}
    assert frame["type"] == "conversation.created"
    assert frame["conversation"]["id"] == conversation.id
    assert rig.deliveries[0].conversation_id == conversation.id and rig.deliveries[0].seq == 0
    rig.clear()
    again, created_again = await rig.conversations.open_direct("bob", "ann")
    assert (again.id, created_again) == (conversation.id, False)
    assert rig.deliveries == []
    assert set(rig.fanout.cached(conversation.id) or ()) == {"ann", "bob"}


@pytest.mark.parametrize("other", BAD_IDS)
async def test_open_direct_checks_the_other_id(rig: Rig, other: Any) -> None:
    with pytest.raises(Invalid) as caught:
        await rig.conversations.open_direct("ann", other)
    exactly(caught.value, Invalid)
    assert await rig.conversations.list_for("ann") == []


async def test_no_direct_conversation_with_yourself(rig: Rig) -> None:
    with pytest.raises(Invalid):
        await rig.conversations.open_direct("ann", "ann")
    assert await rig.conversations.list_for("ann") == []


async def test_user_ids_up_to_the_limit_are_fine(rig: Rig) -> None:
    longest = "u" * MAX_USER_ID
    conversation, _ = await rig.conversations.open_direct("ann", longest)
    assert longest in roles(conversation)


async def test_a_group_and_a_room_are_created_and_announced(rig: Rig) -> None:
    group = await rig.conversations.create("own", "group", "  Team  ", ["m1", "m2", "m1", "own"])
    assert group.kind == "group" and group.title == "Team" and group.created_by == "own"
    assert roles(group) == {"own": "owner", "m1": "member", "m2": "member"}
    room = await rig.conversations.create("own", "room", "Lobby", [])
    assert room.kind == "room" and roles(room) == {"own": "owner"}
    assert [(set(r), f["type"], f["conversation"]["id"]) for r, f in rig.published()] == [
        ({"own", "m1", "m2"}, "conversation.created", group.id),
        ({"own"}, "conversation.created", room.id),
    ]
    assert set(rig.fanout.cached(group.id) or ()) == {"own", "m1", "m2"}


@pytest.mark.parametrize("title", ["", "   ", "t" * (MAX_TITLE + 1)])
async def test_titles_are_checked(rig: Rig, title: str) -> None:
    with pytest.raises(Invalid):
        await rig.conversations.create("own", "group", title, [])
    group = await rig.group("own", "m1")
    with pytest.raises(Invalid):
        await rig.conversations.rename("own", group.id, title)
    assert (await rig.conversations.get("own", group.id)).title == "team"


async def test_a_title_of_the_maximum_length_is_fine(rig: Rig) -> None:
    group = await rig.conversations.create("own", "group", "t" * MAX_TITLE, [])
    assert group.title == "t" * MAX_TITLE


@pytest.mark.parametrize("member", BAD_IDS)
async def test_member_ids_are_checked(rig: Rig, member: Any) -> None:
    with pytest.raises(Invalid):
        await rig.conversations.create("own", "group", "g", ["ok", member])
    group = await rig.group("own")
    with pytest.raises(Invalid):
        await rig.conversations.add_members("own", group.id, ["ok", member])
    assert roles(await rig.conversations.get("own", group.id)) == {"own": "owner"}
    assert rig.stream("own", group.id) == []


async def test_group_size_counts_distinct_members_with_the_creator(rig: Rig) -> None:
    full = await rig.conversations.create("own", "group", "g", ["a", "b", "c", "a", "own"])
    assert len(full.members) == 4
    rig.clear()
    with pytest.raises(TooLarge):
        await rig.conversations.create("own", "group", "g", ["a", "b", "c", "d"])
    with pytest.raises(TooLarge):
        await rig.conversations.create("own", "room", "r", ["a", "b", "c", "d"])
    assert rig.deliveries == []
    with pytest.raises(TooLarge):
        await rig.conversations.add_members("own", full.id, ["d"])
    assert await rig.conversations.add_members("own", full.id, ["a"]) == full  # nothing new
    assert rig.deliveries == []


# Reading ---------------------------------------------------------------------------


async def test_get_needs_membership(rig: Rig) -> None:
    group = await rig.group("own", "m1")
    assert (await rig.conversations.get("m1", group.id)).id == group.id
    with pytest.raises(Forbidden):
        await rig.conversations.get("stranger", group.id)
    with pytest.raises(NotFound):
        await rig.conversations.get("own", "c_missing")


async def test_the_list_shows_newest_activity_first_with_unread_counts(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    rig.clock.advance(1)
    g = await rig.group("own", "ann")
    rig.clock.advance(1)
    await rig.say("bob", d.id, "ping")
    listed = await rig.conversations.list_for("ann")
    assert [c.id for c in listed] == [d.id, g.id]
    assert [(c.unread_count, c.read_seq) for c in listed] == [(1, 0), (0, 0)]
    assert listed[0].last_message is not None and listed[0].last_message.body == "ping"
    assert listed[1].last_message is None
    assert [c.id for c in await rig.conversations.list_for("own")] == [g.id]


async def test_hidden_conversations_leave_the_list_until_a_new_message(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    g = await rig.group("own", "ann")
    await rig.say("bob", d.id, "one")
    rig.clear()
    await rig.conversations.set_hidden("ann", d.id, True)
    assert rig.deliveries == []
    assert [c.id for c in await rig.conversations.list_for("ann")] == [g.id]
    assert d.id not in await rig.chat.unread("ann")
    assert [c.id for c in await rig.conversations.list_for("bob")] == [d.id]  # only for ann
    await rig.say("bob", d.id, "two")
    assert {c.id for c in await rig.conversations.list_for("ann")} == {d.id, g.id}
    assert (await rig.chat.unread("ann"))[d.id] == 2
    await rig.conversations.set_hidden("ann", g.id, True)
    await rig.conversations.set_hidden("ann", g.id, False)
    assert {c.id for c in await rig.conversations.list_for("ann")} == {d.id, g.id}
    with pytest.raises(Forbidden):
        await rig.conversations.set_hidden("cal", d.id, True)
    with pytest.raises(NotFound):
        await rig.conversations.set_hidden("ann", "c_missing", True)


async def test_rooms_are_listed_with_counts_and_whether_the_caller_joined(rig: Rig) -> None:
    lobby = await rig.room("own", "ann")
    rig.clock.advance(1)
    other = await rig.room("bob", title="other")
    await rig.group("own", "ann")  # groups are not rooms
    listed = await rig.conversations.rooms("ann", 10, 0)
    assert [(r.id, r.member_count, r.joined) for r in listed] == [
        (other.id, 1, False),
        (lobby.id, 2, True),
    ]
    assert [r.id for r in await rig.conversations.rooms("ann", 1, 1)] == [lobby.id]
    assert len(await rig.conversations.rooms("ann", 100, 0)) == 2
    for limit, offset in ((0, 0), (101, 0), (10, -1)):
        with pytest.raises(Invalid):
            await rig.conversations.rooms("ann", limit, offset)


# Renaming ----------------------------------------------------------------------------


async def test_owner_and_admin_rename_and_members_hear_it_in_order(rig: Rig) -> None:
    g = await rig.group("own", "adm", "mem")
    await rig.conversations.set_role("own", g.id, "adm", "admin")
    rig.clear()
    renamed = await rig.conversations.rename("adm", g.id, "  New name ")
    assert renamed.title == "New name" and renamed.last_seq == 2
    (stream, s_frame), (recipients, u_frame) = rig.published()
    assert set(stream) == set(recipients) == {"own", "adm", "mem"}
    assert (s_frame["type"], s_frame["seq"], s_frame["title"], s_frame["by"]) == (
        "conversation.renamed",
        2,
        "New name",
        "adm",
    )
    assert u_frame["type"] == "conversation.updated"
    assert u_frame["conversation"]["title"] == "New name"
    assert [d.seq for d in rig.deliveries] == [2, 0]
    assert (await rig.conversations.rename("own", g.id, "Owner's")).title == "Owner's"


async def test_who_may_not_rename(rig: Rig) -> None:
    g = await rig.group("own", "mem")
    d = await rig.direct("own", "mem")
    rig.clear()
    with pytest.raises(Forbidden):
        await rig.conversations.rename("mem", g.id, "mine now")
    with pytest.raises(Forbidden):
        await rig.conversations.rename("stranger", g.id, "mine now")
    with pytest.raises(Forbidden):
        await rig.conversations.rename("own", d.id, "a direct one")
    with pytest.raises(NotFound):
        await rig.conversations.rename("own", "c_missing", "nothing")
    assert rig.deliveries == []
    assert (await rig.conversations.get("own", g.id)).title == "team"


# Adding -------------------------------------------------------------------------------


async def test_new_members_get_their_join_and_what_follows_but_not_before(rig: Rig) -> None:
    g = await rig.group("own", "mem")
    await rig.say("own", g.id, "before")  # 1
    rig.clear()
    updated = await rig.conversations.add_members("own", g.id, ["n1", "n2", "mem", "n1"])
    assert set(roles(updated)) == {"own", "mem", "n1", "n2"}
    published = [(set(r), f["type"], f.get("seq"), f.get("user_id")) for r, f in rig.published()]
    assert published == [
        ({"own", "mem", "n1"}, "member.joined", 2, "n1"),
        ({"own", "mem", "n1", "n2"}, "member.joined", 3, "n2"),
        ({"n1", "n2"}, "conversation.created", None, None),
        ({"own", "mem", "n1", "n2"}, "conversation.updated", None, None),
    ]
    joined = rig.of_type("member.joined")[0][1]
    assert (joined["role"], joined["by"]) == ("member", "own")
    await rig.say("mem", g.id, "after")  # 4
    assert rig.stream("n2", g.id) == [(3, "member.joined"), (4, "message.new")]
    assert rig.stream("n1", g.id) == [
        (2, "member.joined"),
        (3, "member.joined"),
        (4, "message.new"),
    ]
    # A newcomer's pointers start at the end of the stream: history is not unread.
    assert (await rig.chat.unread("n1"))[g.id] == 1  # only "after"
    page = await rig.chat.history("n1", g.id)
    assert [m.body for m in page.messages] == ["before", "after"]


async def test_who_may_add(rig: Rig) -> None:
    g = await rig.group("own", "adm", "mem")
    await rig.conversations.set_role("own", g.id, "adm", "admin")
    d = await rig.direct("own", "mem")
    assert "x" in roles(await rig.conversations.add_members("adm", g.id, ["x"]))
    rig.clear()
    with pytest.raises(Forbidden):
        await rig.conversations.add_members("mem", g.id, ["y"])
    with pytest.raises(Forbidden):
        await rig.conversations.add_members("stranger", g.id, ["y"])
    with pytest.raises(Forbidden):
        await rig.conversations.add_members("own", d.id, ["y"])
    with pytest.raises(NotFound):
        await rig.conversations.add_members("own", "c_missing", ["y"])
    assert rig.deliveries == []


# Removing and leaving -----------------------------------------------------------------


async def test_a_removed_member_gets_its_own_leave_and_nothing_after(rig: Rig) -> None:
    g = await rig.group("own", "mem", "out")
    await rig.say("own", g.id, "all three")  # 1
    rig.clear()
    kept = await rig.conversations.remove_member("own", g.id, "out")
    assert kept is not None and set(roles(kept)) == {"own", "mem"}
    published = [(set(r), f["type"]) for r, f in rig.published()]
    assert published == [
        ({"own", "mem", "out"}, "member.left"),
        ({"own", "mem"}, "conversation.updated"),
    ]
    left = rig.of_type("member.left")[0][1]
    assert (left["seq"], left["user_id"], left["by"], left["reason"]) == (
        2,
        "out",
        "own",
        "removed",
    )
    await rig.say("mem", g.id, "without out")  # 3
    await rig.conversations.rename("own", g.id, "two of us")  # 4
    assert rig.stream("out", g.id) == [(2, "member.left")]
    assert rig.stream("mem", g.id) == [
        (2, "member.left"),
        (3, "message.new"),
        (4, "conversation.renamed"),
    ]
    assert set(rig.fanout.cached(g.id) or ()) == {"own", "mem"}
    with pytest.raises(Forbidden):
        await rig.chat.send_one("out", SendItem(g.id, "still here?", "x"))
    with pytest.raises(Forbidden):
        await rig.presence.typing("out", g.id, "start", "c1")  # decided on the member cache


async def test_leaving_returns_nothing_and_the_leaver_is_told(rig: Rig) -> None:
    g = await rig.group("own", "mem")
    rig.clear()
    assert await rig.conversations.remove_member("mem", g.id, "mem") is None
    [(recipients, frame)] = rig.of_type("member.left")
    assert set(recipients) == {"own", "mem"}
    assert (frame["user_id"], frame["by"], frame["reason"]) == ("mem", None, "left")
    assert rig.types("mem") == ["member.left"]
    with pytest.raises(Forbidden):
        await rig.conversations.get("mem", g.id)


async def test_who_may_remove_whom(rig: Rig) -> None:
    g = await rig.group("own", "adm", "ad2", "mem")
    await rig.conversations.set_role("own", g.id, "adm", "admin")
    await rig.conversations.set_role("own", g.id, "ad2", "admin")
    d = await rig.direct("own", "mem")
    rig.clear()
    with pytest.raises(Forbidden):
        await rig.conversations.remove_member("mem", g.id, "adm")  # a member removes no one
    with pytest.raises(Forbidden):
        await rig.conversations.remove_member("adm", g.id, "ad2")  # admins remove members only
    with pytest.raises(Forbidden):
        await rig.conversations.remove_member("adm", g.id, "own")
    with pytest.raises(Forbidden):
        await rig.conversations.remove_member("stranger", g.id, "mem")
    with pytest.raises(NotFound):
        await rig.conversations.remove_member("own", g.id, "stranger")
    with pytest.raises(Forbidden):
        await rig.conversations.remove_member("own", d.id, "mem")
    with pytest.raises(Forbidden):
        await rig.conversations.remove_member("mem", d.id, "mem")  # hide a direct one instead
    with pytest.raises(NotFound):
        await rig.conversations.remove_member("own", "c_missing", "mem")
    assert rig.deliveries == []
    assert set(roles(await rig.conversations.get("own", g.id))) == {"own", "adm", "ad2", "mem"}
    after = await rig.conversations.remove_member("adm", g.id, "mem")
    assert after is not None and "mem" not in roles(after)
    after = await rig.conversations.remove_member("own", g.id, "ad2")
    assert after is not None and set(roles(after)) == {"own", "adm"}


async def test_when_the_owner_leaves_the_longest_standing_admin_takes_over(rig: Rig) -> None:
    g = await rig.group("own", "early")
    rig.clock.advance(1)
    await rig.conversations.add_members("own", g.id, ["later"])
    await rig.conversations.set_role("own", g.id, "later", "admin")
    rig.clear()
    await rig.conversations.remove_member("own", g.id, "own")
    assert roles(await rig.conversations.get("later", g.id)) == {
        "later": "owner",
        "early": "member",
    }
    published = [(set(r), f["type"], f.get("user_id"), f.get("role")) for r, f in rig.published()]
    assert published == [
        ({"own", "early", "later"}, "member.left", "own", None),
        ({"early", "later"}, "member.role_changed", "later", "owner"),
        ({"early", "later"}, "conversation.updated", None, None),
    ]
    assert rig.of_type("member.role_changed")[0][1]["by"] is None


async def test_without_admins_the_longest_standing_member_takes_over(rig: Rig) -> None:
    g = await rig.group("own", "first")
    rig.clock.advance(1)
    await rig.conversations.add_members("own", g.id, ["second"])
    await rig.conversations.remove_member("own", g.id, "own")
    assert roles(await rig.conversations.get("first", g.id)) == {
        "first": "owner",
        "second": "member",
    }


async def test_whoever_joins_an_empty_room_owns_it(rig: Rig) -> None:
    room = await rig.room("own")
    await rig.conversations.remove_member("own", room.id, "own")
    assert await rig.store.member_ids(room.id) == []
    rig.clear()
    joined = await rig.conversations.join_room("ann", room.id)
    assert roles(joined) == {"ann": "owner"}
    [(_r, frame)] = rig.of_type("member.joined")
    assert (frame["user_id"], frame["role"], frame["by"]) == ("ann", "owner", None)


# Roles ----------------------------------------------------------------------------------


async def test_set_role_rules(rig: Rig) -> None:
    g = await rig.group("own", "adm", "mem")
    await rig.conversations.set_role("own", g.id, "adm", "admin")
    d = await rig.direct("own", "mem")
    rig.clear()
    rig.hooked.calls.clear()
    with pytest.raises(Invalid):
        await rig.conversations.set_role("own", g.id, "mem", "superuser")
    assert rig.hooked.calls == []  # refused before any read
    with pytest.raises(Forbidden):
        await rig.conversations.set_role("adm", g.id, "mem", "admin")  # only the owner
    with pytest.raises(Forbidden):
        await rig.conversations.set_role("mem", g.id, "mem", "admin")
    with pytest.raises(Forbidden):
        await rig.conversations.set_role("own", d.id, "mem", "admin")
    with pytest.raises(NotFound):
        await rig.conversations.set_role("own", g.id, "stranger", "admin")
    with pytest.raises(Invalid):
        await rig.conversations.set_role("own", g.id, "own", "member")  # transfer instead
    assert rig.deliveries == []
    unchanged = await rig.conversations.set_role("own", g.id, "adm", "admin")
    assert roles(unchanged)["adm"] == "admin" and rig.deliveries == []  # no change, no event
    demoted = await rig.conversations.set_role("own", g.id, "adm", "member")
    assert roles(demoted)["adm"] == "member"
    published = [(set(r), f["type"], f.get("role"), f.get("by")) for r, f in rig.published()]
    assert published == [
        ({"own", "adm", "mem"}, "member.role_changed", "member", "own"),
        ({"own", "adm", "mem"}, "conversation.updated", None, None),
    ]


async def test_giving_the_owner_role_is_a_transfer(rig: Rig) -> None:
    g = await rig.group("own", "heir")
    rig.clear()
    moved = await rig.conversations.set_role("own", g.id, "heir", "owner")
    assert roles(moved) == {"own": "admin", "heir": "owner"}
    stream = [(f["seq"], f["user_id"], f["role"]) for _, f in rig.of_type("member.role_changed")]
    assert stream == [(1, "heir", "owner"), (2, "own", "admin")]
    with pytest.raises(Forbidden):  # an admin now: roles are the new owner's to give
        await rig.conversations.set_role("own", g.id, "heir", "member")
    back = await rig.conversations.set_role("heir", g.id, "own", "member")
    assert roles(back) == {"own": "member", "heir": "owner"}


# Rooms -------------------------------------------------------------------------------------


async def test_joining_a_room(rig: Rig) -> None:
    room = await rig.room("own", "mem")
    rig.clear()
    joined = await rig.conversations.join_room("ann", room.id)
    assert roles(joined)["ann"] == "member"
    published = [(set(r), f["type"]) for r, f in rig.published()]
    assert published == [
        ({"own", "mem", "ann"}, "member.joined"),
        ({"ann"}, "conversation.created"),
        ({"own", "mem", "ann"}, "conversation.updated"),
    ]
    rig.clear()
    again = await rig.conversations.join_room("ann", room.id)
    assert again.id == room.id and rig.deliveries == []
    await rig.conversations.join_room("bob", room.id)  # four members: full
    with pytest.raises(TooLarge):
        await rig.conversations.join_room("cal", room.id)
    group = await rig.group("own")
    with pytest.raises(NotFound):
        await rig.conversations.join_room("ann", group.id)
    with pytest.raises(NotFound):
        await rig.conversations.join_room("ann", "c_missing")


# Blocks ----------------------------------------------------------------------------------


async def test_block_and_unblock(rig: Rig) -> None:
    assert await rig.conversations.block("ann", "bob") is True
    assert await rig.conversations.block("ann", "bob") is False
    assert await rig.conversations.block("ann", "cal") is True
    assert await rig.conversations.blocked("ann") == ["bob", "cal"]
    assert await rig.conversations.blocked("bob") == []
    assert await rig.conversations.unblock("ann", "bob") is True
    assert await rig.conversations.unblock("ann", "bob") is False
    assert await rig.conversations.blocked("ann") == ["cal"]
    with pytest.raises(Invalid):
        await rig.conversations.block("ann", "ann")
    for bad in BAD_IDS:
        with pytest.raises(Invalid):
            await rig.conversations.block("ann", bad)
        with pytest.raises(Invalid):
            await rig.conversations.unblock("ann", bad)
    assert rig.deliveries == []


async def test_a_block_stops_opening_and_sending_either_way(rig: Rig) -> None:
    d = await rig.direct("ann", "bob")
    g = await rig.group("own", "ann", "bob")
    await rig.conversations.block("bob", "ann")
    for a, b in (("ann", "bob"), ("bob", "ann")):
        with pytest.raises(Forbidden):
            await rig.conversations.open_direct(a, b)
        with pytest.raises(Forbidden):
            await rig.chat.send_one(a, SendItem(d.id, "hello?", f"{a}-1"))
    await rig.say("ann", g.id, "groups still work")  # blocks cover direct sending only
    await rig.conversations.unblock("bob", "ann")
    again, created = await rig.conversations.open_direct("ann", "bob")
    assert (again.id, created) == (d.id, False)
    await rig.say("ann", d.id, "hello again")


async def test_a_block_hides_typing_from_the_blocker_at_once(rig: Rig) -> None:
    g = await rig.group("own", "ann", "bob")
    await rig.presence.typing("ann", g.id, "start", "c1")
    assert set(rig.of_type("typing")[0][0]) == {"own", "bob"}
    assert await rig.fanout.blockers("ann") == frozenset()  # now cached
    await rig.conversations.block("bob", "ann")
    assert await rig.fanout.blockers("ann") == frozenset({"bob"})
    rig.clear()
    await rig.presence.typing("ann", g.id, "stop", "c1")
    await rig.presence.drain()
    assert [set(r) for r, _ in rig.of_type("typing")] == [{"own"}]
    assert await rig.presence.typists(g.id, "bob") == []
    await rig.conversations.unblock("bob", "ann")
    assert await rig.fanout.blockers("ann") == frozenset()


# Several processes --------------------------------------------------------------------------


async def test_several_processes_keep_no_member_cache(tmp_path: Path) -> None:
    async with running(tmp_path, limits=LIMITS, shared=True) as rig:
        g = await rig.group("own", "mem")
        await rig.conversations.add_members("own", g.id, ["new"])
        assert rig.fanout.cached(g.id) is None
        other = rig.process()
        await other.conversations.remove_member("own", g.id, "mem")
        rig.clear()
        await rig.say("own", g.id, "hello")
        assert [set(r) for r, _ in rig.of_type("message.new")] == [{"own", "new"}]


async def test_a_member_removed_by_another_process_gets_nothing_after_its_leave(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, limits=LIMITS, shared=True) as rig:
        g = await rig.group("own", "mem", "out")
        other = rig.process()

        async def removed_elsewhere() -> None:
            await other.conversations.remove_member("own", g.id, "out")

        # Between this process's read of the members and its store call.
        rig.hooked.before("add_members", removed_elsewhere)
        await rig.conversations.add_members("own", g.id, ["new"])
        assert rig.stream("out", g.id) == [(1, "member.left")]
