"""Conversations, membership, rooms and hiding over REST, in process."""

from __future__ import annotations

import httpx

from tests.api.rest import SERVER_KEY, bearer, error, group, ok, on_behalf, send

CONV = "/api/v1/conversations"


def members(body: dict[str, object]) -> dict[str, str]:
    conversation = body["conversation"]
    assert isinstance(conversation, dict)
    return {m["user_id"]: m["role"] for m in conversation["members"]}


async def test_open_a_direct_conversation_once(rest: httpx.AsyncClient) -> None:
    body = {"kind": "direct", "members": ["bob"]}
    first = ok(await rest.post(CONV, headers=bearer("ann"), json=body), 201)
    again = ok(await rest.post(CONV, headers=bearer("bob"), json={**body, "members": ["ann"]}))
    assert first["conversation"]["id"] == again["conversation"]["id"]
    assert first["conversation"]["kind"] == "direct"
    assert members(first) == {"ann": "member", "bob": "member"}
    r = await rest.post(CONV, headers=bearer("ann"), json={"kind": "direct", "members": ["ann"]})
    assert error(r) == (422, "invalid")


async def test_create_a_group_and_a_room(rest: httpx.AsyncClient) -> None:
    made = ok(
        await rest.post(
            CONV,
            headers=bearer("ann"),
            json={"kind": "group", "title": "Team", "members": ["bob", "cat"]},
        ),
        201,
    )
    assert (made["conversation"]["kind"], made["conversation"]["title"]) == ("group", "Team")
    assert members(made) == {"ann": "owner", "bob": "member", "cat": "member"}
    room = ok(
        await rest.post(CONV, headers=bearer("ann"), json={"kind": "room", "title": "Lobby"}), 201
    )
    assert members(room) == {"ann": "owner"}
    r = await rest.post(CONV, headers=bearer("ann"), json={"kind": "group", "members": ["bob"]})
    assert error(r) == (422, "invalid")


async def test_the_backend_creates_for_a_user(rest: httpx.AsyncClient) -> None:
    body = {"kind": "group", "title": "Order 42", "members": ["buyer"]}
    made = ok(await rest.post(CONV, headers=on_behalf("shop"), json=body), 201)
    assert made["conversation"]["created_by"] == "shop"
    assert error(await rest.post(CONV, headers=SERVER_KEY, json=body)) == (403, "forbidden")
    assert error(await rest.post(CONV, json=body)) == (401, "unauthorized")


async def test_list_and_get_conversations(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob", title="Plans")
    await send(rest, "ann", cid, "hello")
    listed = ok(await rest.get(CONV, headers=bearer("bob")))["conversations"]
    assert [(c["id"], c["unread_count"]) for c in listed] == [(cid, 1)]
    assert listed[0]["last_message"]["body"] == "hello"
    assert ok(await rest.get(CONV, headers=bearer("cat")))["conversations"] == []
    one = ok(await rest.get(f"{CONV}/{cid}", headers=bearer("bob")))
    assert one["conversation"]["title"] == "Plans"
    assert error(await rest.get(f"{CONV}/{cid}", headers=bearer("cat"))) == (403, "forbidden")
    assert error(await rest.get(f"{CONV}/c_nothing", headers=bearer("ann")))[0] == 404
    assert error(await rest.get(f"{CONV}/{cid}")) == (401, "unauthorized")


async def test_rename(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    renamed = ok(await rest.patch(f"{CONV}/{cid}", headers=bearer("ann"), json={"title": "New"}))
    assert renamed["conversation"]["title"] == "New"
    r = await rest.patch(f"{CONV}/{cid}", headers=bearer("bob"), json={"title": "Mine"})
    assert error(r) == (403, "forbidden")
    assert error(await rest.patch(f"{CONV}/{cid}", json={"title": "x"})) == (401, "unauthorized")


async def test_add_and_remove_members(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    added = ok(
        await rest.post(f"{CONV}/{cid}/members", headers=bearer("ann"), json={"members": ["cat"]})
    )
    assert set(members(added)) == {"ann", "bob", "cat"}
    r = await rest.post(f"{CONV}/{cid}/members", headers=bearer("bob"), json={"members": ["dan"]})
    assert error(r) == (403, "forbidden")
    assert ok(await rest.delete(f"{CONV}/{cid}/members/cat", headers=bearer("ann"))) == {"ok": True}
    after = ok(await rest.get(f"{CONV}/{cid}", headers=bearer("ann")))
    assert set(members(after)) == {"ann", "bob"}
    assert error(await rest.delete(f"{CONV}/{cid}/members/ann", headers=bearer("bob")))[0] == 403
    assert error(await rest.delete(f"{CONV}/{cid}/members/bob")) == (401, "unauthorized")


async def test_set_a_role(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    made = ok(
        await rest.put(
            f"{CONV}/{cid}/members/bob/role", headers=bearer("ann"), json={"role": "admin"}
        )
    )
    assert members(made)["bob"] == "admin"
    r = await rest.put(
        f"{CONV}/{cid}/members/ann/role", headers=bearer("bob"), json={"role": "member"}
    )
    assert error(r) == (403, "forbidden")
    r = await rest.put(f"{CONV}/{cid}/members/bob/role", json={"role": "member"})
    assert error(r) == (401, "unauthorized")


async def test_leave(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    assert ok(await rest.post(f"{CONV}/{cid}/leave", headers=bearer("bob"))) == {"ok": True}
    assert error(await rest.get(f"{CONV}/{cid}", headers=bearer("bob"))) == (403, "forbidden")
    assert error(await rest.post(f"{CONV}/{cid}/leave", headers=bearer("bob")))[0] == 403
    assert error(await rest.post(f"{CONV}/{cid}/leave")) == (401, "unauthorized")


async def test_hide_and_show(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    assert ok(await rest.post(f"{CONV}/{cid}/hide", headers=bearer("bob"))) == {"ok": True}
    assert ok(await rest.get(CONV, headers=bearer("bob")))["conversations"] == []
    assert ok(await rest.delete(f"{CONV}/{cid}/hide", headers=bearer("bob"))) == {"ok": True}
    listed = ok(await rest.get(CONV, headers=bearer("bob")))["conversations"]
    assert [c["id"] for c in listed] == [cid]
    assert error(await rest.post(f"{CONV}/{cid}/hide", headers=bearer("cat"))) == (403, "forbidden")
    assert error(await rest.post(f"{CONV}/{cid}/hide")) == (401, "unauthorized")
    assert error(await rest.delete(f"{CONV}/{cid}/hide")) == (401, "unauthorized")


async def test_list_and_join_rooms(rest: httpx.AsyncClient) -> None:
    room = ok(
        await rest.post(CONV, headers=bearer("ann"), json={"kind": "room", "title": "Lobby"}), 201
    )
    rid = room["conversation"]["id"]
    listed = ok(await rest.get("/api/v1/rooms", headers=bearer("bob")))["rooms"]
    assert [(r["id"], r["joined"], r["member_count"]) for r in listed] == [(rid, False, 1)]
    joined = ok(await rest.post(f"/api/v1/rooms/{rid}/join", headers=bearer("bob")))
    assert members(joined) == {"ann": "owner", "bob": "member"}
    listed = ok(await rest.get("/api/v1/rooms?limit=10&offset=0", headers=bearer("bob")))["rooms"]
    assert [(r["joined"], r["member_count"]) for r in listed] == [(True, 2)]
    r = await rest.get("/api/v1/rooms?limit=many", headers=bearer("bob"))
    assert error(r) == (422, "invalid")
    gid = await group(rest, "ann", "cat")
    r = await rest.post(f"/api/v1/rooms/{gid}/join", headers=bearer("bob"))
    assert error(r) == (404, "not_found")  # a group is no room
    assert error(await rest.get("/api/v1/rooms")) == (401, "unauthorized")
    assert error(await rest.post(f"/api/v1/rooms/{rid}/join")) == (401, "unauthorized")


async def test_the_list_comes_a_page_at_a_time(rest: httpx.AsyncClient) -> None:
    made = [await group(rest, "ann", "bob", title=f"g{n}") for n in range(5)]
    first = ok(await rest.get(CONV, headers=bearer("bob"), params={"limit": 2}))
    assert len(first["conversations"]) == 2 and first["next_cursor"]
    seen = [c["id"] for c in first["conversations"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        page = ok(
            await rest.get(CONV, headers=bearer("bob"), params={"limit": 2, "cursor": cursor})
        )
        seen += [c["id"] for c in page["conversations"]]
        cursor = page["next_cursor"]
    everything = ok(await rest.get(CONV, headers=bearer("bob")))
    assert everything["next_cursor"] is None
    assert seen == [c["id"] for c in everything["conversations"]]
    assert sorted(seen) == sorted(made)
    for bad in ({"limit": 0}, {"limit": 201}, {"limit": ""}, {"cursor": "x"}, {"cursor": "1:\x00"}):
        assert error(await rest.get(CONV, headers=bearer("bob"), params=bad)) == (422, "invalid")
