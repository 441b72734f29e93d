"""Groups with roles, rooms, hiding, blocking refusals."""

from __future__ import annotations

import httpx

from tests.support import Client, ServerProcess, auth, create_group, new_id, open_direct


def call(server: ServerProcess, method: str, user: str, path: str, **kw: object) -> httpx.Response:
    return httpx.request(method, server.url + path, headers=auth(user), **kw)  # type: ignore[arg-type]


async def test_group_roles_and_membership_events(server: ServerProcess) -> None:
    cid = create_group(server, "go", ["ga", "gm"], title="team")
    base = f"/api/v1/conversations/{cid}"
    ga = await Client.connect(server, "ga")
    gm = await Client.connect(server, "gm")
    await gm.request({"type": "ping"})

    # A plain member may not manage the group.
    assert call(server, "PATCH", "gm", base, json={"title": "x"}).status_code == 403
    assert (
        call(server, "POST", "gm", base + "/members", json={"members": ["gx"]}).status_code == 403
    )
    assert call(server, "DELETE", "gm", base + "/members/ga").status_code == 403
    assert (
        call(server, "PUT", "gm", base + "/members/gm/role", json={"role": "admin"}).status_code
        == 403
    )

    r = call(server, "PUT", "go", base + "/members/ga/role", json={"role": "admin"})
    assert r.status_code == 200
    assert {m["user_id"]: m["role"] for m in r.json()["conversation"]["members"]}["ga"] == "admin"
    role = await gm.recv_type("member.role_changed")
    assert (role["user_id"], role["role"], role["by"]) == ("ga", "admin", "go")

    assert call(server, "PATCH", "ga", base, json={"title": "renamed"}).status_code == 200
    renamed = await gm.recv_type("conversation.renamed")
    assert (renamed["title"], renamed["seq"]) == ("renamed", role["seq"] + 1)

    newcomer = await Client.connect(server, "gn")
    await newcomer.request({"type": "ping"})
    assert (
        call(server, "POST", "ga", base + "/members", json={"members": ["gn"]}).status_code == 200
    )
    created = await newcomer.recv_type("conversation.created")
    assert created["conversation"]["id"] == cid and created["conversation"]["title"] == "renamed"
    joined = await newcomer.recv_type("member.joined")
    assert (joined["user_id"], joined["by"]) == ("gn", "ga")
    assert (await gm.recv_type("member.joined"))["user_id"] == "gn"

    # An admin cannot remove the owner; the owner removes a member.
    assert call(server, "DELETE", "ga", base + "/members/go").status_code == 403
    assert call(server, "DELETE", "go", base + "/members/gm").status_code == 200
    left = await gm.recv_type("member.left")
    assert (left["user_id"], left["by"], left["reason"]) == ("gm", "go", "removed")
    sent = await ga.send_message(cid, "after removal")
    assert (await newcomer.recv_type("message.new"))["message"]["id"] == sent["id"]
    await gm.no_frame(0.3, "message.new")  # removed: nothing more arrives
    assert call(server, "GET", "gm", base + "/messages").status_code == 403
    refused = await gm.request(
        {"type": "message.send", "conversation_id": cid, "body": "x", "client_msg_id": new_id()}
    )
    assert refused["code"] == "forbidden"

    # The owner leaves: ownership passes to the admin.
    assert call(server, "POST", "go", base + "/leave").status_code == 200
    roles = {
        m["user_id"]: m["role"]
        for m in call(server, "GET", "ga", base).json()["conversation"]["members"]
    }
    assert roles == {"ga": "owner", "gn": "member"}
    history = call(server, "GET", "gn", base + "/messages").json()["messages"]
    assert [m["body"] for m in history] == ["after removal"]


async def test_direct_conversations_have_no_membership_changes(server: ServerProcess) -> None:
    cid = open_direct(server, "xa", "xb")
    base = f"/api/v1/conversations/{cid}"
    assert (
        call(server, "POST", "xa", base + "/members", json={"members": ["xc"]}).status_code == 403
    )
    assert call(server, "POST", "xa", base + "/leave").status_code == 403
    assert call(server, "PATCH", "xa", base, json={"title": "t"}).status_code == 403


async def test_rooms_are_listed_and_joinable(server: ServerProcess) -> None:
    r = call(server, "POST", "ro", "/api/v1/conversations", json={"kind": "room", "title": "lobby"})
    assert r.status_code == 201
    rid = r.json()["conversation"]["id"]
    rooms = call(server, "GET", "rv", "/api/v1/rooms").json()["rooms"]
    lobby = next(room for room in rooms if room["id"] == rid)
    assert (lobby["title"], lobby["member_count"], lobby["joined"]) == ("lobby", 1, False)
    assert call(server, "GET", "rv", f"/api/v1/conversations/{rid}/messages").status_code == 403

    owner = await Client.connect(server, "ro")
    await owner.request({"type": "ping"})
    r = call(server, "POST", "rv", f"/api/v1/rooms/{rid}/join")
    assert r.status_code == 200 and len(r.json()["conversation"]["members"]) == 2
    assert (await owner.recv_type("member.joined"))["user_id"] == "rv"
    assert call(server, "POST", "rv", f"/api/v1/rooms/{rid}/join").status_code == 200  # idempotent
    r = call(
        server,
        "POST",
        "rv",
        f"/api/v1/conversations/{rid}/messages",
        json={"body": "hello room", "client_msg_id": new_id()},
    )
    assert r.status_code == 201
    assert call(server, "POST", "rv", f"/api/v1/conversations/{rid}/leave").status_code == 200
    assert (await owner.recv_type("member.left"))["reason"] == "left"
    group = create_group(server, "ro", ["rq"])
    assert call(server, "POST", "rv", f"/api/v1/rooms/{group}/join").status_code == 404


def test_hidden_conversation_reappears_on_new_message(server: ServerProcess) -> None:
    cid = open_direct(server, "ha", "hb")

    def listed(user: str) -> list[str]:
        return [
            c["id"]
            for c in call(server, "GET", user, "/api/v1/conversations").json()["conversations"]
        ]

    assert call(server, "POST", "ha", f"/api/v1/conversations/{cid}/hide").status_code == 200
    assert cid not in listed("ha") and cid in listed("hb")
    call(
        server,
        "POST",
        "hb",
        f"/api/v1/conversations/{cid}/messages",
        json={"body": "are you there?", "client_msg_id": new_id()},
    )
    assert cid in listed("ha")
    call(server, "POST", "ha", f"/api/v1/conversations/{cid}/hide")
    assert call(server, "DELETE", "ha", f"/api/v1/conversations/{cid}/hide").status_code == 200
    assert cid in listed("ha")


def test_blocked_user_cannot_open_or_write_direct(server: ServerProcess) -> None:
    existing = open_direct(server, "ka", "kb")
    assert call(server, "POST", "ka", "/api/v1/blocks/kb").status_code == 200
    assert call(server, "POST", "ka", "/api/v1/blocks/ka").status_code == 422
    for sender in ("kb", "ka"):
        r = call(
            server,
            "POST",
            sender,
            f"/api/v1/conversations/{existing}/messages",
            json={"body": "hi", "client_msg_id": new_id()},
        )
        assert r.status_code == 403, sender
    call(server, "POST", "kc", "/api/v1/blocks/kd")
    r = call(
        server, "POST", "kd", "/api/v1/conversations", json={"kind": "direct", "members": ["kc"]}
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    # Groups are not affected; unblocking restores the direct conversation.
    group = create_group(server, "ka", ["kb"])
    r = call(
        server,
        "POST",
        "kb",
        f"/api/v1/conversations/{group}/messages",
        json={"body": "in the group", "client_msg_id": new_id()},
    )
    assert r.status_code == 201
    assert call(server, "DELETE", "ka", "/api/v1/blocks/kb").status_code == 200
    r = call(
        server,
        "POST",
        "kb",
        f"/api/v1/conversations/{existing}/messages",
        json={"body": "hi again", "client_msg_id": new_id()},
    )
    assert r.status_code == 201
