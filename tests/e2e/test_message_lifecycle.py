"""Receipts, unread counts, edits, deletes, replies, and their replay."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import Client, ServerProcess, auth, create_group, new_id, open_direct


def get(server: ServerProcess, user: str, path: str, **params: object) -> dict[str, Any]:
    r = httpx.get(server.url + path, headers=auth(user), params=params)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_receipts_round_trip(server: ServerProcess) -> None:
    cid = open_direct(server, "rs", "rr")
    sender = await Client.connect(server, "rs")
    reader = await Client.connect(server, "rr")
    await reader.request({"type": "ping"})
    sent = await sender.send_message(cid, "did you get this?")
    seq = (await reader.recv_type("message.new"))["message"]["seq"]
    assert seq == sent["seq"]

    ack = await reader.request({"type": "delivered", "conversation_id": cid, "seq": seq})
    assert ack == {"type": "ack", "id": ack["id"], "moved": True}
    delivered = await sender.recv_type("receipt")
    assert (delivered["user_id"], delivered["kind"], delivered["seq"]) == ("rr", "delivered", seq)
    await reader.request({"type": "read", "conversation_id": cid, "seq": seq})
    read = await sender.recv_type("receipt")
    assert (read["user_id"], read["kind"], read["seq"]) == ("rr", "read", seq)
    # Pointers never move back; a repeat changes nothing and announces nothing.
    again = await reader.request({"type": "read", "conversation_id": cid, "seq": 0})
    assert again["moved"] is False
    members = {
        m["user_id"]: m
        for m in get(server, "rs", f"/api/v1/conversations/{cid}")["conversation"]["members"]
    }
    assert (members["rr"]["read_seq"], members["rr"]["delivered_seq"]) == (seq, seq)
    page = get(server, "rs", f"/api/v1/conversations/{cid}/messages")
    pointers = {r["user_id"]: (r["read_seq"], r["delivered_seq"]) for r in page["receipts"]}
    assert pointers == {"rr": (seq, seq), "rs": (seq, seq)}
    read_by = [u for u, (read, _) in pointers.items() if read >= sent["seq"] and u != "rs"]
    assert read_by == ["rr"]
    # REST does the same, and a seq beyond the stream is clamped to its end.
    r = httpx.post(
        f"{server.url}/api/v1/conversations/{cid}/read", headers=auth("rs"), json={"seq": 999}
    )
    assert r.status_code == 200 and r.json()["moved"] is False  # sending already read it
    outsider = httpx.post(
        f"{server.url}/api/v1/conversations/{cid}/read", headers=auth("nosy"), json={"seq": 1}
    )
    assert outsider.status_code == 403


async def test_unread_counts_through_send_read_delete(server: ServerProcess) -> None:
    cid = open_direct(server, "ua", "ub")
    ua = await Client.connect(server, "ua")
    sent = [await ua.send_message(cid, f"n{i}") for i in range(3)]

    def unread(user: str) -> tuple[int, int]:
        body = get(server, user, "/api/v1/unread")
        return body["total"], body["conversations"].get(cid, 0)

    assert unread("ub") == (3, 3)
    assert unread("ua") == (0, 0)  # your own messages never count
    ub = await Client.connect(server, "ub")
    await ub.request({"type": "read", "conversation_id": cid, "seq": sent[1]["seq"]})
    assert unread("ub") == (1, 1)
    deleted = await ua.request({"type": "message.delete", "message_id": sent[2]["id"]})
    assert deleted["type"] == "ack" and deleted["message"]["deleted_at"]
    assert unread("ub") == (0, 0)  # a deleted message no longer counts
    more = await ua.send_message(cid, "again")
    listed = get(server, "ub", "/api/v1/conversations")["conversations"]
    assert [c["unread_count"] for c in listed if c["id"] == cid] == [1]
    await ub.send_message(cid, "reply")  # sending reads everything before it
    assert unread("ub") == (0, 0)
    assert more["seq"] > sent[2]["seq"]


async def test_edit_history_and_refusals(server: ServerProcess) -> None:
    cid = create_group(server, "ea", ["eb"])
    ea = await Client.connect(server, "ea")
    eb = await Client.connect(server, "eb")
    await eb.request({"type": "ping"})
    original = await ea.send_message(cid, "first draft")
    await eb.recv_type("message.new")

    refused = await eb.request({"type": "message.edit", "message_id": original["id"], "body": "x"})
    assert refused["code"] == "forbidden"
    empty = await ea.request({"type": "message.edit", "message_id": original["id"], "body": " "})
    assert empty["code"] == "invalid"
    missing = await ea.request({"type": "message.edit", "message_id": "m_nope", "body": "x"})
    assert missing["code"] == "not_found"

    edited = await ea.request(
        {"type": "message.edit", "message_id": original["id"], "body": "second draft"}
    )
    assert edited["message"]["body"] == "second draft" and edited["message"]["edited_at"]
    event = await eb.recv_type("message.edited")
    assert event["message"]["id"] == original["id"] and event["seq"] == original["seq"] + 1
    r = httpx.patch(
        f"{server.url}/api/v1/messages/{original['id']}", headers=auth("ea"), json={"body": "final"}
    )
    assert r.status_code == 200 and r.json()["message"]["body"] == "final"
    assert (await eb.recv_type("message.edited"))["message"]["body"] == "final"

    versions = get(server, "eb", f"/api/v1/messages/{original['id']}/history")["versions"]
    assert [v["body"] for v in versions] == ["first draft", "second draft", "final"]
    r = httpx.patch(
        f"{server.url}/api/v1/messages/{original['id']}",
        headers=auth("eb"),
        json={"body": "hijack"},
    )
    assert r.status_code == 403
    r = httpx.get(f"{server.url}/api/v1/messages/{original['id']}/history", headers=auth("zz"))
    assert r.status_code == 403


async def test_delete_leaves_tombstone_and_resume_replays_edit_and_delete(
    server: ServerProcess,
) -> None:
    cid = create_group(server, "da", ["dm", "dv"])
    da = await Client.connect(server, "da")
    first = await da.send_message(cid, "keep me, edited later")
    second = await da.send_message(cid, "secret, deleted later")
    third = await da.send_message(cid, "nobody deletes this")
    cursor = third["seq"]

    # dm (a member) may not delete da's message; the owner da may delete anything.
    dm = await Client.connect(server, "dm")
    refused = await dm.request({"type": "message.delete", "message_id": third["id"]})
    assert refused["code"] == "forbidden"
    await dm.close()

    await da.request({"type": "message.edit", "message_id": first["id"], "body": "edited"})
    await da.request({"type": "message.delete", "message_id": second["id"]})
    reply = await da.request(
        {
            "type": "message.send",
            "conversation_id": cid,
            "body": "re",
            "client_msg_id": new_id(),
            "reply_to": first["id"],
        }
    )
    assert reply["message"]["reply_to"] == first["id"]
    bad_reply = await da.request(
        {
            "type": "message.send",
            "conversation_id": cid,
            "body": "re",
            "client_msg_id": new_id(),
            "reply_to": "m_elsewhere",
        }
    )
    assert bad_reply["code"] == "invalid"

    dv = await Client.connect(server, "dv")
    await dv.send({"type": "resume", "cursors": {cid: cursor}})
    replayed = []
    while (frame := await dv.recv())["type"] != "ack":
        if frame["type"] != "presence":  # of no conversation: never held, may come first
            replayed.append(frame)
    assert [(f["type"], f["seq"]) for f in replayed] == [
        ("message.edited", cursor + 1),
        ("message.deleted", cursor + 2),
        ("message.new", cursor + 3),
    ]
    assert replayed[0]["message"]["body"] == "edited"
    tombstone = replayed[1]["message"]
    assert tombstone["id"] == second["id"] and tombstone["body"] == ""
    assert tombstone["deleted_at"] and replayed[1]["deleted_by"] == "da"

    history = get(server, "dv", f"/api/v1/conversations/{cid}/messages")["messages"]
    by_id = {m["id"]: m for m in history}
    assert by_id[second["id"]]["body"] == "" and by_id[second["id"]]["deleted_at"]
    assert by_id[first["id"]]["body"] == "edited"
    # A replay from the start shows the deleted body nowhere.
    await dv.send({"type": "resume", "cursors": {cid: 0}})
    while (frame := await dv.recv())["type"] != "ack":
        assert "secret" not in str(frame)
    assert get(server, "dv", f"/api/v1/messages/{second['id']}/history")["versions"] == []
    gone = await da.request({"type": "message.edit", "message_id": second["id"], "body": "x"})
    assert gone["code"] == "not_found"
