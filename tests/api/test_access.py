"""Every operation admits exactly what it declares, and the document says the same."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.routing import Route

from hubbub.api.access import (
    SERVER,
    USER,
    USER_OR_SERVER,
    Access,
    Auth,
    Credential,
    Server,
    User,
)
from hubbub.api.openapi import Operation
from hubbub.auth import Identity, TokenVerifier
from hubbub.config import Settings
from hubbub.errors import Forbidden, Invalid, Unauthorized
from hubbub.server import Hubbub
from tests.api.rest import (
    API_KEY,
    SECRET,
    SERVER_KEY,
    bearer,
    client_of,
    error,
    group,
    ok,
    on_behalf,
    running,
    token,
)

POST_MESSAGE = ("POST", "/api/v1/conversations/{conversation_id}/messages")
STATS = ("GET", "/api/v1/stats")

# The document's form of each credential, written out independently of access.py.
REQUIREMENT: dict[Credential, dict[str, list[str]]] = {
    Credential.TOKEN: {"bearer": []},
    Credential.ON_BEHALF: {"apiKey": [], "onBehalfOf": []},
    Credential.API_KEY: {"apiKey": []},
}


def concrete(path: str) -> str:
    """The path with each parameter filled in (with an id nothing has)."""
    return re.sub(r"\{[^}]+\}", "nothing", path)


def protected(hubbub: Hubbub) -> list[Operation[Any]]:
    """The operations a user may call (all but the public ones and the server's own)."""
    return [op for op in hubbub.api.operations() if Credential.TOKEN in op.auth.accepts]


async def call(client: httpx.AsyncClient, op: Operation[Any], **kw: Any) -> httpx.Response:
    return await client.request(op.method, concrete(op.path), **kw)


def test_what_each_operation_declares(hubbub: Hubbub) -> None:
    operations = hubbub.api.operations()
    declared = {(op.method, op.path): op.auth for op in operations}
    assert len(declared) == len(operations) == 40
    assert [key for key, auth in declared.items() if auth.public] == [("GET", "/health")]
    assert [key for key, auth in declared.items() if auth is USER_OR_SERVER] == [POST_MESSAGE]
    server_only = [key for key, auth in declared.items() if auth.accepts == (Credential.API_KEY,)]
    assert server_only == [STATS]
    others = {key for key, auth in declared.items() if not auth.public} - {POST_MESSAGE, STATS}
    assert all(declared[key] is USER for key in others)


def test_every_api_route_is_built_from_an_operation(hubbub: Hubbub) -> None:
    app = hubbub.api.app()
    assert isinstance(app, Starlette)
    declared = {(op.method, op.path) for op in hubbub.api.operations()}
    routed = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/api/")
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert routed == {key for key in declared if key[1].startswith("/api/")}


async def test_no_credentials_are_refused_everywhere_but_public_operations(
    hubbub: Hubbub, rest: httpx.AsyncClient
) -> None:
    for op in hubbub.api.operations():
        r = await call(rest, op)
        if op.auth.public:
            assert r.status_code == 200, (op.method, op.path)
            continue
        assert error(r) == (401, "unauthorized"), (op.method, op.path, r.text)
        missing = "missing token" if Credential.TOKEN in op.auth.accepts else "missing API key"
        assert r.json()["error"]["message"] == missing
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Authorization": "Bearer not-a-jwt"}, "malformed token"),
        ({"Authorization": f"Basic {token('ann')}"}, "missing token"),
        ({"Authorization": f"Bearer {token('ann', ttl=-60)}"}, "token expired"),
        ({"Authorization": f"Bearer {token('system')}"}, "user id 'system' is reserved"),
        ({"X-Api-Key": "wrong"}, "invalid API key"),
        ({"X-Api-Key": "wrong", "X-On-Behalf-Of": "ann"}, "invalid API key"),
        ({"X-Api-Key": "wrong", **bearer("ann")}, "invalid API key"),
    ],
    ids=["malformed", "not-bearer", "expired", "reserved", "key", "key-on-behalf", "key-first"],
)
async def test_bad_credentials_are_401_everywhere(
    hubbub: Hubbub, rest: httpx.AsyncClient, headers: dict[str, str], message: str
) -> None:
    for op in protected(hubbub):
        r = await call(rest, op, headers=headers)
        assert error(r) == (401, "unauthorized"), (op.method, op.path, r.text)
        assert r.json()["error"]["message"] == message
        assert r.headers["www-authenticate"] == "Bearer"


async def test_the_api_key_alone_is_the_server_on_posting_only(
    hubbub: Hubbub, rest: httpx.AsyncClient
) -> None:
    for op in protected(hubbub):
        r = await call(rest, op, headers=SERVER_KEY)
        if (op.method, op.path) == POST_MESSAGE:
            assert r.status_code not in (401, 403), r.text  # admitted: the body is missing
            continue
        assert error(r) == (403, "forbidden"), (op.method, op.path, r.text)
        assert r.json()["error"]["message"] == "with an API key, name the user in X-On-Behalf-Of"
        assert "www-authenticate" not in r.headers


async def test_a_token_or_the_key_on_behalf_passes_everywhere(
    hubbub: Hubbub, rest: httpx.AsyncClient
) -> None:
    for op in protected(hubbub):
        for headers in (bearer("ann"), on_behalf("ann")):
            r = await call(rest, op, headers=headers)
            assert r.status_code != 401, (op.method, op.path, r.text)
            if r.status_code == 403:  # refused by the rules, not by the credential
                assert "API key" not in r.json()["error"]["message"]


async def test_the_stats_take_the_api_key_alone(rest: httpx.AsyncClient) -> None:
    for headers in (bearer("ann"), {"Authorization": "Bearer not-a-jwt"}):
        r = await rest.get("/api/v1/stats", headers=headers)
        assert error(r) == (401, "unauthorized")
        assert r.json()["error"]["message"] == "missing API key"
    r = await rest.get("/api/v1/stats", headers={"X-Api-Key": "wrong"})
    assert error(r) == (401, "unauthorized")
    r = await rest.get("/api/v1/stats", headers=on_behalf("ann"))
    assert error(r) == (403, "forbidden")
    assert r.json()["error"]["message"] == "with an API key, this operation takes no X-On-Behalf-Of"
    stats = ok(await rest.get("/api/v1/stats", headers=SERVER_KEY))
    assert stats["connections"] == 0 and stats["users"] == 0


async def test_acting_on_behalf_of_a_reserved_or_bad_user_is_invalid(
    hubbub: Hubbub, rest: httpx.AsyncClient
) -> None:
    for user in ("system", "x" * 129):
        r = await rest.get("/api/v1/conversations", headers=on_behalf(user))
        assert error(r) == (422, "invalid")


async def test_any_key_is_refused_while_none_is_configured(tmp_path: Path) -> None:
    async with running(tmp_path, api_key=None) as hubbub, client_of(hubbub) as rest:
        for op in protected(hubbub):
            for headers in (SERVER_KEY, on_behalf("ann")):
                r = await call(rest, op, headers=headers)
                assert error(r) == (401, "unauthorized"), (op.method, op.path)
                assert r.json()["error"]["message"] == "invalid API key"
        assert (await rest.get("/api/v1/conversations", headers=bearer("ann"))).status_code == 200


async def test_the_key_wins_over_a_token(rest: httpx.AsyncClient) -> None:
    r = await rest.get("/api/v1/conversations", headers={**SERVER_KEY, **bearer("ann")})
    assert error(r) == (403, "forbidden")
    cid = await group(rest, "ann", "bob")
    r = await rest.get(
        f"/api/v1/conversations/{cid}", headers={**on_behalf("cat"), **bearer("ann")}
    )
    assert error(r) == (403, "forbidden")  # acting as cat, not a member


async def test_a_token_s_display_name_is_recorded(rest: httpx.AsyncClient) -> None:
    cid = await group(rest, "ann", "bob")
    await rest.get("/api/v1/unread", headers=bearer("bob", name="Bob"))
    conversation = ok(await rest.get(f"/api/v1/conversations/{cid}", headers=on_behalf("ann")))
    names = {m["user_id"]: m["name"] for m in conversation["conversation"]["members"]}
    assert names == {"ann": None, "bob": "Bob"}


async def test_the_document_states_each_operation_s_declaration(
    hubbub: Hubbub, rest: httpx.AsyncClient
) -> None:
    spec = ok(await rest.get("/openapi.json"))
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert (schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == ("header", "X-Api-Key")
    assert (schemes["onBehalfOf"]["in"], schemes["onBehalfOf"]["name"]) == (
        "header",
        "X-On-Behalf-Of",
    )
    for op in hubbub.api.operations():
        item = spec["paths"][op.path][op.method.lower()]
        if op.auth.public:
            assert "security" not in item and "401" not in item["responses"]
            continue
        assert item["security"] == [REQUIREMENT[c] for c in op.auth.accepts], op.path
        assert "401" in item["responses"]
        assert {name for option in item["security"] for name in option} <= set(schemes)


# Access on its own, with the declarations no operation makes.

TOKEN_ONLY: Auth[User] = Auth((Credential.TOKEN,))
SERVER_ONLY: Auth[Server] = Auth((Credential.API_KEY,))


def access() -> Access:
    async def seen(identity: Identity) -> None:
        pass

    return Access(TokenVerifier(Settings(jwt_secret=SECRET)), API_KEY, seen)


async def test_a_declaration_admits_only_its_credentials() -> None:
    gate = access()
    ann = Headers(bearer("ann"))
    assert await gate.admit(ann, TOKEN_ONLY) == User("ann", Credential.TOKEN)
    assert await gate.admit(Headers(on_behalf("ann")), USER) == User("ann", Credential.ON_BEHALF)
    assert await gate.admit(Headers(SERVER_KEY), SERVER_ONLY) is SERVER
    assert await gate.admit(Headers(on_behalf("ann")), USER_OR_SERVER) == User(
        "ann", Credential.ON_BEHALF
    )
    refusals: list[tuple[Headers, Auth[Any], type[Exception], str]] = [
        (Headers(on_behalf("ann")), TOKEN_ONLY, Forbidden, "needs a user's token"),
        (Headers(SERVER_KEY), TOKEN_ONLY, Forbidden, "needs a user's token"),
        (Headers(on_behalf("ann")), SERVER_ONLY, Forbidden, "takes no X-On-Behalf-Of"),
        (ann, SERVER_ONLY, Unauthorized, "missing API key"),
        (Headers({"X-Api-Key": "wrong"}), SERVER_ONLY, Unauthorized, "invalid API key"),
        (Headers(on_behalf("system")), USER, Invalid, "reserved"),
    ]
    for headers, auth, kind, message in refusals:
        with pytest.raises(kind, match=message):
            await gate.admit(headers, auth)
