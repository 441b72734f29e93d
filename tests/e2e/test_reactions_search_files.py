"""Reactions, full-text search, attachments, and the server API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import Client, ServerProcess, auth, create_group, new_id, open_direct

API_KEY = "backend-key-" + "k" * 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("hubbub"),
        HUBBUB_API_KEY=API_KEY,
        HUBBUB_UPLOAD_MAX_BYTES=str(64 * 1024),
    ).start()
    yield proc
    proc.stop()


def post(server: ServerProcess, user: str, cid: str, body: str, **extra: object) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/api/v1/conversations/{cid}/messages",
        headers=auth(user),
        json={"body": body, "client_msg_id": new_id(), **extra},
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["message"])


async def test_reactions_counts_and_events(server: ServerProcess) -> None:
    cid = create_group(server, "xa", ["xb", "xc"])
    message = post(server, "xa", cid, "react to me")
    xa = await Client.connect(server, "xa")
    xb = await Client.connect(server, "xb")
    await xa.request({"type": "ping"})
    ack = await xb.request({"type": "reaction.add", "message_id": message["id"], "emoji": "👍"})
    assert ack["changed"] is True
    event = await xa.recv_type("reaction")
    assert (event["user_id"], event["emoji"], event["action"], event["count"]) == (
        "xb",
        "👍",
        "added",
        1,
    )
    again = await xb.request({"type": "reaction.add", "message_id": message["id"], "emoji": "👍"})
    assert again["changed"] is False and again["count"] == 1
    r = httpx.put(f"{server.url}/api/v1/messages/{message['id']}/reactions/👍", headers=auth("xc"))
    assert r.json() == {"changed": True, "count": 2}
    httpx.put(f"{server.url}/api/v1/messages/{message['id']}/reactions/🎉", headers=auth("xc"))
    bad = await xb.request({"type": "reaction.add", "message_id": message["id"], "emoji": "a b"})
    assert bad["code"] == "invalid"
    outsider = httpx.put(
        f"{server.url}/api/v1/messages/{message['id']}/reactions/x", headers=auth("zz")
    )
    assert outsider.status_code == 403

    def reactions(user: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{server.url}/api/v1/messages/{message['id']}", headers=auth(user))
        return list(r.json()["message"]["reactions"])

    assert reactions("xb") == [
        {"emoji": "👍", "count": 2, "me": True},
        {"emoji": "🎉", "count": 1, "me": False},
    ]
    assert reactions("xa") == [
        {"emoji": "👍", "count": 2, "me": False},
        {"emoji": "🎉", "count": 1, "me": False},
    ]
    await xb.request({"type": "reaction.remove", "message_id": message["id"], "emoji": "👍"})
    later = [await xa.recv_type("reaction") for _ in range(3)]  # xc's two, then xb's removal
    assert [(e["user_id"], e["emoji"], e["action"], e["count"]) for e in later] == [
        ("xc", "👍", "added", 2),
        ("xc", "🎉", "added", 1),
        ("xb", "👍", "removed", 1),
    ]
    assert reactions("xb")[0] == {"emoji": "👍", "count": 1, "me": False}


def test_search_finds_only_what_the_caller_may_see(server: ServerProcess) -> None:
    mine = open_direct(server, "sa", "sb")
    theirs = open_direct(server, "sc", "sd")
    hit = post(server, "sa", mine, "The quarterly Report is ready")
    also = post(server, "sb", mine, "report, report, report!")
    post(server, "sc", theirs, "secret report for others")
    deleted = post(server, "sa", mine, "draft report to delete")
    httpx.delete(f"{server.url}/api/v1/messages/{deleted['id']}", headers=auth("sa"))

    def search(user: str, **params: object) -> dict[str, Any]:
        r = httpx.get(f"{server.url}/api/v1/search", headers=auth(user), params=params)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        return dict(r.json())

    found = search("sb", q="report")
    assert [m["id"] for m in found["results"]] == [also["id"], hit["id"]]  # ranked
    assert found["next_offset"] is None
    assert [m["id"] for m in search("sb", q="quarterly REPORT")["results"]] == [hit["id"]]
    assert search("sb", q='"unbalanced (quote')["results"] == []  # no syntax errors
    first = search("sa", q="report", limit=1)
    assert len(first["results"]) == 1 and first["next_offset"] == 1
    second = search("sa", q="report", limit=1, offset=1)
    assert second["results"][0]["id"] != first["results"][0]["id"]
    assert [m["id"] for m in search("sc", q="report")["results"]] != [hit["id"]]
    assert all(m["conversation_id"] == theirs for m in search("sc", q="report")["results"])
    r = httpx.get(
        f"{server.url}/api/v1/search",
        headers=auth("sc"),
        params={"q": "report", "conversation_id": mine},
    )
    assert r.status_code == 403
    assert (
        httpx.get(f"{server.url}/api/v1/search", headers=auth("sc"), params={"q": " "}).status_code
        == 422
    )
    # An edit is searchable by its new words only.
    httpx.patch(
        f"{server.url}/api/v1/messages/{hit['id']}",
        headers=auth("sa"),
        json={"body": "The annual summary is ready"},
    )
    assert [m["id"] for m in search("sb", q="annual")["results"]] == [hit["id"]]
    assert [m["id"] for m in search("sb", q="quarterly")["results"]] == []


def test_attachments_upload_send_and_download(server: ServerProcess) -> None:
    cid = open_direct(server, "fa", "fb")
    png = b"\x89PNG\r\n\x1a\n" + b"p" * 1000
    r = httpx.post(
        f"{server.url}/api/v1/uploads",
        headers=auth("fa"),
        files={"file": ("../../cat.png", png, "image/png")},
    )
    assert r.status_code == 201, r.text
    upload = r.json()["upload"]
    assert (upload["name"], upload["size"], upload["content_type"]) == (
        "cat.png",
        1008,
        "image/png",
    )
    # Not shared yet: only the uploader may fetch it.
    url = f"{server.url}{r.json()['url']}"
    assert httpx.get(url, headers=auth("fa")).content == png
    assert httpx.get(url, headers=auth("fb")).status_code == 403

    message = post(server, "fa", cid, "look", kind="image", attachments=[upload["id"]])
    assert message["kind"] == "image"
    assert [a["id"] for a in message["attachments"]] == [upload["id"]]
    got = httpx.get(url, headers=auth("fb"))
    assert got.status_code == 200 and got.content == png
    assert got.headers["content-type"] == "image/png"
    assert httpx.get(url, headers=auth("stranger")).status_code == 403

    def refused(user: str, **body: object) -> int:
        return httpx.post(
            f"{server.url}/api/v1/conversations/{cid}/messages",
            headers=auth(user),
            json={"client_msg_id": new_id(), **body},
        ).status_code

    assert refused("fb", body="x", kind="image", attachments=[upload["id"]]) == 422  # not theirs
    assert refused("fa", body="x", kind="file") == 422  # no attachment
    assert refused("fa", body="x", attachments=[upload["id"]]) == 422  # text with attachment
    assert refused("fa", body="x", kind="system") == 422  # only the server posts these
    big = httpx.post(
        f"{server.url}/api/v1/uploads",
        headers=auth("fa"),
        files={"file": ("big.bin", b"b" * (65 * 1024), "image/png")},
    )
    assert big.status_code == 413
    exe = httpx.post(
        f"{server.url}/api/v1/uploads",
        headers=auth("fa"),
        files={"file": ("x.exe", b"MZ", "application/x-msdownload")},
    )
    assert exe.status_code == 422
    empty = httpx.post(f"{server.url}/api/v1/uploads", headers=auth("fa"), data={"x": "1"})
    assert empty.status_code == 422
    # Deleting the message withdraws the file from the other member.
    httpx.delete(f"{server.url}/api/v1/messages/{message['id']}", headers=auth("fa"))
    assert httpx.get(url, headers=auth("fb")).status_code == 403


def test_server_api_posts_system_messages_and_acts_for_users(server: ServerProcess) -> None:
    key = {"X-Api-Key": API_KEY}
    r = httpx.post(
        f"{server.url}/api/v1/conversations",
        headers={**key, "X-On-Behalf-Of": "shop"},
        json={"kind": "group", "title": "Order 42", "members": ["buyer"]},
    )
    assert r.status_code == 201
    conv = r.json()["conversation"]
    assert conv["created_by"] == "shop"
    r = httpx.post(
        f"{server.url}/api/v1/conversations/{conv['id']}/messages",
        headers=key,
        json={"body": "Your order shipped", "client_msg_id": "ship-42", "kind": "system"},
    )
    assert r.status_code == 201
    message = r.json()["message"]
    assert (message["sender_id"], message["kind"]) == ("system", "system")
    history = httpx.get(
        f"{server.url}/api/v1/conversations/{conv['id']}/messages", headers=auth("buyer")
    ).json()["messages"]
    assert [m["body"] for m in history] == ["Your order shipped"]

    # Users cannot post system messages nor pose as the server.
    r = httpx.post(
        f"{server.url}/api/v1/conversations/{conv['id']}/messages",
        headers=auth("buyer"),
        json={"body": "fake", "client_msg_id": new_id(), "kind": "system"},
    )
    assert r.status_code == 422
    assert (
        httpx.get(f"{server.url}/api/v1/conversations", headers=auth("system")).status_code == 401
    )
    wrong = httpx.post(
        f"{server.url}/api/v1/conversations/{conv['id']}/messages",
        headers={"X-Api-Key": "nope"},
        json={"body": "x", "client_msg_id": "1"},
    )
    assert wrong.status_code == 401
    need_user = httpx.get(f"{server.url}/api/v1/conversations", headers=key)
    assert need_user.status_code == 403


async def test_display_names_on_messages(server: ServerProcess) -> None:
    cid = open_direct(server, "dn", "dm")
    dn = await Client.connect(server, "dn", name="Dana")
    sent = await dn.send_message(cid, "hi")
    assert sent["sender_name"] == "Dana"
