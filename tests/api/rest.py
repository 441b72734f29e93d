"""hubbub's REST API called in process, through httpx's ASGI transport.

A real ``Hubbub`` (SQLite in the test's directory, the in-memory broker and
presence) is started without a listening socket; its ASGI app answers the
requests directly.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from hubbub.auth import mint_token
from hubbub.clock import ManualClock
from hubbub.config import Settings
from hubbub.limits.settings import Quotas
from hubbub.push.settings import PushSettings
from hubbub.server import Hubbub
from tests.support import NO_PUSH_SERVICE

SECRET = "api-tests-secret-" + "s" * 32
API_KEY = "api-tests-key-" + "k" * 20
BASE_URL = "http://hubbub.test"

Json = dict[str, Any]


@asynccontextmanager
async def running(tmp_path: Path, **settings: Any) -> AsyncIterator[Hubbub]:
    """A started hubbub with its database in ``tmp_path``, on a clock moved by hand."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "jwt_secret": SECRET,
        "api_key": API_KEY,
        "log_level": "warning",
        "quotas": Quotas.off(),
        "push": PushSettings(expo_url=NO_PUSH_SERVICE),
        **settings,
    }
    hubbub = Hubbub(Settings(**values), ManualClock(start=time.time()))
    await hubbub.start()
    try:
        yield hubbub
    finally:
        await hubbub.stop()


@asynccontextmanager
async def client_of(hubbub: Hubbub) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hubbub.api.app())
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def token(user: str, *, name: str | None = None, ttl: float = 3600) -> str:
    return mint_token(SECRET, user, name=name, ttl=ttl)


def bearer(user: str, *, name: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, name=name)}"}


def on_behalf(user: str) -> dict[str, str]:
    """The app's backend acting as ``user``."""
    return {"X-Api-Key": API_KEY, "X-On-Behalf-Of": user}


SERVER_KEY = {"X-Api-Key": API_KEY}
"""The app's backend itself."""


def error(response: httpx.Response) -> tuple[int, str]:
    """The status and the error code of a refusal."""
    detail = response.json()["error"]
    assert isinstance(detail["code"], str)
    return response.status_code, detail["code"]


def ok(response: httpx.Response, status: int = 200) -> Json:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


async def group(client: httpx.AsyncClient, owner: str, *members: str, title: str = "g") -> str:
    body = {"kind": "group", "title": title, "members": list(members)}
    created = ok(await client.post("/api/v1/conversations", headers=bearer(owner), json=body), 201)
    cid = created["conversation"]["id"]
    assert isinstance(cid, str)
    return cid


async def send(client: httpx.AsyncClient, user: str, cid: str, body: str) -> Json:
    response = await client.post(
        f"/api/v1/conversations/{cid}/messages",
        headers=bearer(user),
        json={"body": body, "client_msg_id": f"{user}-{body}"},
    )
    message = ok(response, 201)["message"]
    assert isinstance(message, dict)
    return message
