"""Presence and blocks over REST, in process."""

from __future__ import annotations

import httpx

from tests.api.rest import bearer, error, group, ok


async def test_presence_of_people_you_share_a_conversation_with(rest: httpx.AsyncClient) -> None:
    await group(rest, "ann", "bob")
    found = ok(await rest.get("/api/v1/presence", params={"user": "bob"}, headers=bearer("ann")))
    assert [(p["user_id"], p["status"]) for p in found["presence"]] == [("bob", "offline")]
    r = await rest.get("/api/v1/presence", headers=bearer("ann"))
    assert error(r) == (422, "invalid")
    many = {"user": [f"u{i}" for i in range(101)]}
    assert error(await rest.get("/api/v1/presence", params=many, headers=bearer("ann")))[0] == 422
    r = await rest.get("/api/v1/presence", params={"user": "bob"})
    assert error(r) == (401, "unauthorized")


async def test_block_list_and_unblock(rest: httpx.AsyncClient) -> None:
    assert ok(await rest.post("/api/v1/blocks/bob", headers=bearer("ann"))) == {"ok": True}
    assert ok(await rest.get("/api/v1/blocks", headers=bearer("ann"))) == {"blocked": ["bob"]}
    assert ok(await rest.get("/api/v1/blocks", headers=bearer("bob"))) == {"blocked": []}
    r = await rest.post(
        "/api/v1/conversations", headers=bearer("bob"), json={"kind": "direct", "members": ["ann"]}
    )
    assert error(r) == (403, "forbidden")
    assert ok(await rest.delete("/api/v1/blocks/bob", headers=bearer("ann"))) == {"ok": True}
    assert ok(await rest.get("/api/v1/blocks", headers=bearer("ann"))) == {"blocked": []}
    assert error(await rest.post("/api/v1/blocks/system", headers=bearer("ann"))) == (
        422,
        "invalid",
    )
    assert error(await rest.post("/api/v1/blocks/bob")) == (401, "unauthorized")
    assert error(await rest.delete("/api/v1/blocks/bob")) == (401, "unauthorized")
    assert error(await rest.get("/api/v1/blocks")) == (401, "unauthorized")
