"""Bad input over REST: 422 with a documented code, never a 500; nothing stored is lost.

Integers beyond 2^53 - 1, NUL characters (on SQLite and PostgreSQL alike),
search text with full-text syntax, deep JSON, 405s with ``Allow``, and the
limits the OpenAPI document states.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.api.rest import bearer, client_of, error, group, ok, on_behalf, running, send
from tests.services import fresh_postgres

CONV = "/api/v1/conversations"
MSG = "/api/v1/messages"
MAX_INT = 2**53 - 1


@pytest.fixture(params=["sqlite", "postgres"])
async def rest_on(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The REST API over either database."""
    if request.param == "sqlite":
        async with running(tmp_path) as hubbub, client_of(hubbub) as client:
            yield client
        return
    async with (
        fresh_postgres() as url,
        running(tmp_path, database_url=url) as hubbub,
        client_of(hubbub) as client,
    ):
        yield client


async def bodies(client: httpx.AsyncClient, user: str, cid: str) -> list[str]:
    page = ok(await client.get(f"{CONV}/{cid}/messages", headers=bearer(user)))
    return [m["body"] for m in page["messages"]]


@pytest.mark.parametrize(
    "query",
    [
        "before=9223372036854775808",
        "after=9223372036854775808",
        "before=12345678901234567890",
        "after=99999999999999999999",
        f"before={MAX_INT + 1}",
        "limit=12345678901234567890",
        "limit=",
        "before=",
        "after=",
        "before=-1",
        "limit=1e3",
        "limit=%205",
        "limit=+5",
        "limit=1_0",
        "limit=%D9%A1",  # an Arabic-Indic digit one
    ],
)
async def test_bad_integers_in_history_queries_are_422(rest: httpx.AsyncClient, query: str) -> None:
    cid = await group(rest, "ia", "ib")
    await send(rest, "ia", cid, "kept")
    r = await rest.get(f"{CONV}/{cid}/messages?{query}", headers=bearer("ia"))
    assert error(r) == (422, "invalid"), r.text
    assert await bodies(rest, "ia", cid) == ["kept"]


async def test_bad_integers_elsewhere_are_422(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ic", "id")
    await send(rest, "ic", cid, "kept")
    h = bearer("ic")
    for url in [
        "/api/v1/search?q=kept&offset=9223372036854775808",
        "/api/v1/search?q=kept&offset=12345678901234567890",
        "/api/v1/search?q=kept&limit=12345678901234567890",
        "/api/v1/search?q=kept&limit=",
        "/api/v1/search?q=kept&offset=",
        "/api/v1/rooms?offset=9223372036854775808",
        "/api/v1/rooms?limit=99999999999999999999",
        "/api/v1/rooms?limit=",
    ]:
        assert error(await rest.get(url, headers=h)) == (422, "invalid"), url
    for kind in ("read", "delivered"):
        for seq in (2**63, 2**64, 10**20, MAX_INT + 1, -1):
            r = await rest.post(f"{CONV}/{cid}/{kind}", headers=h, json={"seq": seq})
            assert error(r) == (422, "invalid"), (kind, seq, r.text)
    # The bounds themselves are fine.
    assert ok(await rest.get(f"{CONV}/{cid}/messages?before={MAX_INT}", headers=h))["messages"]
    assert ok(await rest.get(f"/api/v1/search?q=kept&offset={MAX_INT}", headers=h)) == {
        "results": [],
        "next_offset": None,
    }
    assert ok(await rest.post(f"{CONV}/{cid}/read", headers=h, json={"seq": MAX_INT}))
    assert await bodies(rest, "ic", cid) == ["kept"]


async def test_nul_is_refused_everywhere_on_both_databases(rest_on: httpx.AsyncClient) -> None:
    rest = rest_on
    cid = await group(rest, "na", "nb")
    original = await send(rest, "na", cid, "original")
    mid = original["id"]
    h = bearer("na")
    nul = quote("\x00")
    posts: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", CONV, {"kind": "group", "title": "t\x00", "members": ["nb"]}),
        ("POST", CONV, {"kind": "group", "title": "t", "members": ["nb\x00"]}),
        ("POST", CONV, {"kind": "direct", "members": ["nc\x00"]}),
        ("PATCH", f"{CONV}/{cid}", {"title": "renamed\x00"}),
        ("POST", f"{CONV}/{cid}/members", {"members": ["nd\x00"]}),
        ("POST", f"{CONV}/{cid}/messages", {"body": "a\x00b", "client_msg_id": "k1"}),
        ("POST", f"{CONV}/{cid}/messages", {"body": "b", "client_msg_id": "k\x00"}),
        ("POST", f"{CONV}/{cid}/messages", {"body": "b", "client_msg_id": "k", "reply_to": "\x00"}),
        ("POST", f"{CONV}/{cid}/messages",
         {"body": "", "client_msg_id": "k3", "kind": "file", "attachments": ["u_\x00"]}),
        ("PATCH", f"{MSG}/{mid}", {"body": "edited\x00"}),
    ]  # fmt: skip
    for method, url, body in posts:
        r = await rest.request(method, url, headers=h, json=body)
        assert error(r) == (422, "invalid"), (method, url, body, r.text)
        assert "NUL" in r.json()["error"]["message"]
    for method, url in [
        ("GET", f"{CONV}/{cid}{nul}"),
        ("GET", f"{CONV}/{cid}{nul}/messages"),
        ("GET", f"{MSG}/{mid}{nul}"),
        ("DELETE", f"{MSG}/{mid}{nul}"),
        ("PUT", f"{MSG}/{mid}/reactions/{nul}"),
        ("PUT", f"{MSG}/{mid}/reactions/a{nul}"),
        ("POST", f"/api/v1/blocks/nb{nul}"),
        ("DELETE", f"{CONV}/{cid}/members/nb{nul}"),
        ("POST", f"/api/v1/rooms/{cid}{nul}/join"),
        ("GET", f"/api/v1/uploads/u_{nul}"),
        ("GET", f"/api/v1/search?q={nul}"),
        ("GET", f"/api/v1/search?q=original{nul}"),
        ("GET", f"/api/v1/search?q=original&conversation_id={cid}{nul}"),
        ("GET", f"/api/v1/presence?user=nb{nul}"),
        ("GET", f"{CONV}/{cid}/messages?x{nul}=1"),
    ]:
        r = await rest.request(method, url, headers=h)
        assert error(r) == (422, "invalid"), (method, url, r.text)
    # The backend acting for a user whose id holds NUL.
    r = await rest.get(CONV, headers=on_behalf("na\x00"))
    assert error(r) == (422, "invalid"), r.text
    # A file name holding NUL (written by hand: httpx would percent-encode it).
    form = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a\x00.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    )
    multipart = {**h, "Content-Type": "multipart/form-data; boundary=b"}
    r = await rest.post("/api/v1/uploads", headers=multipart, content=form)
    assert error(r) == (422, "invalid") and "NUL" in r.json()["error"]["message"], r.text
    # A page of the web app.
    assert error(await rest.get(f"/static/a{nul}.js")) == (422, "invalid")

    assert await bodies(rest, "na", cid) == ["original"]
    conversation = ok(await rest.get(f"{CONV}/{cid}", headers=h))["conversation"]
    assert conversation["title"] == "g" and len(conversation["members"]) == 2
    assert [c["id"] for c in ok(await rest.get(CONV, headers=h))["conversations"]] == [cid]
    # Text showing the escape is no NUL.
    shown = await send(rest, "na", cid, "\\u0000 is six characters")
    assert shown["body"] == "\\u0000 is six characters"


SEARCHES = [
    '"', '""', '"hello', 'hello"', "*", "hello*", "h*", "NEAR(", "NEAR(hello world)", "AND",
    "OR", "NOT", "hello AND", "AND hello", "-", "-hello", "^", "^hello", "hello:", "body:hello",
    "(", ")", "()", "{hello}", "[", "+", "\\", "'", "hello -world", "hello OR nothing", "%", "_",
    "?", ":", ";", "!", "&", "|", "<->", "hello & world", "hello | world", "!hello", "hello:*",
    "a:b:c", "\u200b", "\ufeff", "\x1f", "\u2028 hello", "\x7f", "ü", "😀", "x" * 200,
]  # fmt: skip


async def test_search_text_is_plain_words_on_both_databases(rest_on: httpx.AsyncClient) -> None:
    rest = rest_on
    cid = await group(rest, "sa", "sb")
    await send(rest, "sa", cid, "hello world")
    await send(rest, "sa", cid, "NEAR AND OR NOT")
    h = bearer("sa")
    for q in SEARCHES:
        r = await rest.get("/api/v1/search", params={"q": q}, headers=h)
        assert r.status_code in (200, 422), (q, r.text)
        if r.status_code == 422:
            assert r.json()["error"]["code"] == "invalid" and not q.strip(), q
    found = ok(await rest.get("/api/v1/search", params={"q": '"hello" world*'}, headers=h))
    assert [m["body"] for m in found["results"]] == ["hello world"]
    found = ok(await rest.get("/api/v1/search", params={"q": "AND NOT"}, headers=h))
    assert [m["body"] for m in found["results"]] == ["NEAR AND OR NOT"]
    for q in ["\x00", "hello\x00", "\x00hello\x00world"]:
        r = await rest.get("/api/v1/search", params={"q": q}, headers=h)
        assert error(r) == (422, "invalid"), (q, r.text)


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_deep_json_bodies_are_422(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "da", "db")
    await send(rest, "da", cid, "kept")
    h = {**bearer("da"), "Content-Type": "application/json"}
    for body in [
        deep(1000),
        "{" * 1000,
        '{"body":' + deep(1000) + ',"client_msg_id":"k"}',
        '{"client_msg_id":"k","body":"x","extra":' + deep(50_000) + "}",
        '{"client_msg_id":"k","body":"x","attachments":' + deep(1000) + "}",
    ]:
        r = await rest.post(f"{CONV}/{cid}/messages", headers=h, content=body)
        assert error(r) == (422, "invalid"), (body[:40], r.text)
    assert await bodies(rest, "da", cid) == ["kept"]


async def test_405_names_the_allowed_methods(rest: httpx.AsyncClient) -> None:
    h = bearer("ma")
    for method, url, allowed in [
        ("DELETE", CONV, "GET, HEAD, POST"),
        ("PUT", f"{CONV}/c_x", "GET, HEAD, PATCH"),
        ("GET", f"{CONV}/c_x/hide", "DELETE, POST"),
        ("PATCH", "/api/v1/blocks/bob", "DELETE, POST"),
        ("POST", f"{MSG}/m_x", "DELETE, GET, HEAD, PATCH"),
        ("POST", "/health", "GET, HEAD"),
    ]:
        r = await rest.request(method, url, headers=h)
        assert error(r) == (405, "method_not_allowed"), (method, url)
        assert r.headers["allow"] == allowed, (method, url)


async def test_openapi_states_the_limits_and_decoding_enforces_them(
    rest: httpx.AsyncClient,
) -> None:
    spec = ok(await rest.get("/openapi.json"))
    schemas = spec["components"]["schemas"]
    post = schemas["PostMessage"]["properties"]
    assert (post["client_msg_id"]["minLength"], post["client_msg_id"]["maxLength"]) == (1, 128)
    assert post["body"]["maxLength"] == 4000
    assert post["attachments"]["maxItems"] == 10
    assert schemas["EditBody"]["properties"]["body"]["maxLength"] == 4000
    assert schemas["MarkBody"]["properties"]["seq"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_INT,
    }
    created = schemas["CreateConversation"]["properties"]
    assert created["members"]["items"] == {"type": "string", "minLength": 1, "maxLength": 128}
    title = next(t for t in created["title"]["anyOf"] if t["type"] == "string")
    assert (title["minLength"], title["maxLength"]) == (1, 200)
    assert schemas["RenameBody"]["properties"]["title"]["maxLength"] == 200
    assert schemas["MembersBody"]["properties"]["members"]["items"]["maxLength"] == 128

    def params(path: str, method: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p["schema"] for p in spec["paths"][path][method]["parameters"]}

    history = params(f"{CONV}/{{conversation_id}}/messages", "get")
    assert history["limit"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert history["before"] == {"type": "integer", "minimum": 0, "maximum": MAX_INT}
    search = params("/api/v1/search", "get")
    assert (search["q"]["minLength"], search["q"]["maxLength"]) == (1, 200)
    assert search["offset"]["maximum"] == MAX_INT
    assert params("/api/v1/rooms", "get")["limit"]["maximum"] == 100
    assert params(f"{MSG}/{{message_id}}/reactions/{{emoji}}", "put")["emoji"]["maxLength"] == 32
    assert params("/api/v1/presence", "get")["user"]["maxLength"] == 128

    # Decoding enforces the schema's bounds, with the documented codes.
    cid = await group(rest, "la", "lb")
    h = bearer("la")
    url = f"{CONV}/{cid}/messages"
    r = await rest.post(url, headers=h, json={"body": "x", "client_msg_id": "k" * 129})
    assert error(r) == (422, "invalid")
    r = await rest.post(CONV, headers=h, json={"kind": "group", "title": "t" * 201})
    assert error(r) == (422, "invalid")
    r = await rest.patch(f"{CONV}/{cid}", headers=h, json={"title": ""})
    assert error(r) == (422, "invalid")
    r = await rest.post(url, headers=h, json={"body": "x" * 4001, "client_msg_id": "big"})
    assert error(r) == (413, "too_large")
    r = await rest.post(
        url,
        headers=h,
        json={"body": "", "client_msg_id": "many", "kind": "file", "attachments": ["u"] * 11},
    )
    assert error(r) == (413, "too_large")
