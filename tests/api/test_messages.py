"""History, sending, edits, deletes, receipts, unread counts, reactions, search."""

from __future__ import annotations

import httpx

from tests.api.rest import SERVER_KEY, bearer, error, group, ok, on_behalf, send

CONV = "/api/v1/conversations"
MSG = "/api/v1/messages"


async def test_send_and_read_history(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    url = f"{CONV}/{cid}/messages"
    body = {"body": "hello", "client_msg_id": "m1"}
    first = ok(await rest.post(url, headers=bearer("ann"), json=body), 201)["message"]
    again = ok(await rest.post(url, headers=bearer("ann"), json=body))["message"]
    assert again["id"] == first["id"] and (first["sender_id"], first["seq"]) == ("ann", 1)
    await send(rest, "bob", cid, "hi")
    page = ok(await rest.get(url, headers=bearer("bob")))
    assert [m["body"] for m in page["messages"]] == ["hello", "hi"]
    assert page["has_more"] is False
    older = ok(await rest.get(f"{url}?before=2&limit=1", headers=bearer("bob")))
    assert [m["body"] for m in older["messages"]] == ["hello"]
    assert error(await rest.get(f"{url}?after=x", headers=bearer("bob"))) == (422, "invalid")
    assert error(await rest.get(url, headers=bearer("cat"))) == (403, "forbidden")
    r = await rest.post(url, headers=bearer("cat"), json={"body": "x", "client_msg_id": "c"})
    assert error(r) == (403, "forbidden")
    assert error(await rest.get(url)) == (401, "unauthorized")
    assert error(await rest.post(url, json=body)) == (401, "unauthorized")


async def test_the_backend_posts_as_the_server_or_for_a_user(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    url = f"{CONV}/{cid}/messages"
    system = {"body": "Your order shipped", "client_msg_id": "ship", "kind": "system"}
    posted = ok(await rest.post(url, headers=SERVER_KEY, json=system), 201)["message"]
    assert (posted["sender_id"], posted["kind"]) == ("system", "system")
    assert (
        ok(await rest.post(url, headers=SERVER_KEY, json=system))["message"]["id"] == posted["id"]
    )
    as_bob = ok(
        await rest.post(url, headers=on_behalf("bob"), json={"body": "ok", "client_msg_id": "b"}),
        201,
    )["message"]
    assert as_bob["sender_id"] == "bob"
    r = await rest.post(url, headers=bearer("ann"), json={**system, "client_msg_id": "fake"})
    assert error(r) == (422, "invalid")  # users cannot pose as the server
    r = await rest.post(url, headers={"X-Api-Key": "nope"}, json=system)
    assert error(r) == (401, "unauthorized")


async def test_get_edit_delete_and_history_of_a_message(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    mid = (await send(rest, "ann", cid, "first"))["id"]
    url = f"{MSG}/{mid}"
    assert ok(await rest.get(url, headers=bearer("bob")))["message"]["body"] == "first"
    edited = ok(await rest.patch(url, headers=bearer("ann"), json={"body": "second"}))["message"]
    assert edited["body"] == "second" and edited["edited_at"] is not None
    assert error(await rest.patch(url, headers=bearer("bob"), json={"body": "x"}))[0] == 403
    versions = ok(await rest.get(f"{url}/history", headers=bearer("bob")))["versions"]
    assert [v["body"] for v in versions] == ["first", "second"]
    deleted = ok(await rest.delete(url, headers=bearer("ann")))["message"]
    assert deleted["deleted_at"] is not None and deleted["body"] == ""
    assert error(await rest.get(url, headers=bearer("cat"))) == (403, "forbidden")
    assert error(await rest.get(f"{MSG}/m_nothing", headers=bearer("ann")))[0] == 404
    assert error(await rest.get(url)) == (401, "unauthorized")
    assert error(await rest.patch(url, json={"body": "x"})) == (401, "unauthorized")
    assert error(await rest.delete(url)) == (401, "unauthorized")
    assert error(await rest.get(f"{url}/history")) == (401, "unauthorized")


async def test_receipts_and_unread_counts(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    await send(rest, "ann", cid, "one")
    second = await send(rest, "ann", cid, "two")
    unread = ok(await rest.get("/api/v1/unread", headers=bearer("bob")))
    assert unread == {"total": 2, "conversations": {cid: 2}}
    seq = {"seq": second["seq"]}
    delivered = ok(await rest.post(f"{CONV}/{cid}/delivered", headers=bearer("bob"), json=seq))
    assert delivered["moved"] is True
    assert delivered["receipt"]["delivered_seq"] == second["seq"]
    read = ok(await rest.post(f"{CONV}/{cid}/read", headers=bearer("bob"), json={"seq": 1}))
    assert read["moved"] is True and read["receipt"]["read_seq"] == 1
    back = ok(await rest.post(f"{CONV}/{cid}/read", headers=bearer("bob"), json={"seq": 1}))
    assert back == {"moved": False, "receipt": None}
    assert ok(await rest.get("/api/v1/unread", headers=bearer("bob")))["total"] == 1
    r = await rest.post(f"{CONV}/{cid}/read", headers=bearer("cat"), json={"seq": 1})
    assert error(r) == (403, "forbidden")
    assert error(await rest.post(f"{CONV}/{cid}/read", json=seq)) == (401, "unauthorized")
    assert error(await rest.post(f"{CONV}/{cid}/delivered", json=seq)) == (401, "unauthorized")
    assert error(await rest.get("/api/v1/unread")) == (401, "unauthorized")


async def test_react_and_take_back(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    mid = (await send(rest, "ann", cid, "nice"))["id"]
    url = f"{MSG}/{mid}/reactions/👍"
    assert ok(await rest.put(url, headers=bearer("bob"))) == {"changed": True, "count": 1}
    assert ok(await rest.put(url, headers=bearer("bob"))) == {"changed": False, "count": 1}
    reactions = ok(await rest.get(f"{MSG}/{mid}", headers=bearer("bob")))["message"]["reactions"]
    assert reactions == [{"emoji": "👍", "count": 1, "me": True}]
    assert ok(await rest.delete(url, headers=bearer("bob"))) == {"changed": True, "count": 0}
    assert error(await rest.put(url, headers=bearer("cat"))) == (403, "forbidden")
    assert error(await rest.put(url)) == (401, "unauthorized")
    assert error(await rest.delete(url)) == (401, "unauthorized")


async def test_search(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    other = await group(rest, "cat", "dan")
    await send(rest, "ann", cid, "the blue boat")
    await send(rest, "bob", cid, "a red car")
    await send(rest, "cat", other, "blue sky")
    found = ok(await rest.get("/api/v1/search", params={"q": "blue"}, headers=bearer("bob")))
    assert [m["body"] for m in found["results"]] == ["the blue boat"]
    assert found["next_offset"] is None
    only = {"q": "car", "conversation_id": cid}
    found = ok(await rest.get("/api/v1/search", params=only, headers=bearer("ann")))
    assert [m["body"] for m in found["results"]] == ["a red car"]
    r = await rest.get(
        "/api/v1/search", params={"q": "x", "conversation_id": other}, headers=bearer("ann")
    )
    assert error(r) == (403, "forbidden")
    assert error(await rest.get("/api/v1/search", params={"q": "blue"})) == (401, "unauthorized")
