"""Browsers on other origins: CORS for the REST API, the Origin check on WebSockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from hubbub.config import ConfigError, cors_origins
from tests.conftest import serve_in_process
from tests.support import RawClient, ServerProcess, auth, token

APP = "http://localhost:3000"


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("cors"), HUBBUB_CORS_ORIGINS=f"{APP}, https://app.example.com/"
    ).start()
    yield proc
    proc.stop()


def preflight(server: ServerProcess, origin: str, method: str = "POST") -> httpx.Response:
    return httpx.options(
        server.url + "/api/v1/conversations",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_a_listed_origin_gets_preflights_and_allow_headers(cors_server: ServerProcess) -> None:
    r = preflight(cors_server, APP)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == APP
    assert {"GET", "POST", "PUT", "PATCH", "DELETE"} <= set(
        r.headers["access-control-allow-methods"].replace(" ", "").split(",")
    )
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed and "x-api-key" in allowed
    assert r.headers["access-control-max-age"] == "3600"
    assert "access-control-allow-credentials" not in r.headers

    r = httpx.post(
        cors_server.url + "/api/v1/conversations",
        headers={**auth("ca"), "Origin": "https://app.example.com"},
        json={"kind": "direct", "members": ["cb"]},
    )
    assert r.status_code == 201
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    # Errors carry the header too, so the page can read them.
    r = httpx.get(cors_server.url + "/api/v1/conversations", headers={"Origin": APP})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == APP
    assert "WWW-Authenticate" in r.headers["access-control-expose-headers"]


def test_uploads_and_downloads_work_cross_origin(cors_server: ServerProcess) -> None:
    headers = {**auth("cu"), "Origin": APP}
    r = httpx.post(
        cors_server.url + "/api/v1/uploads",
        headers=headers,
        files={"file": ("note.txt", b"hello", "text/plain")},
    )
    assert r.status_code == 201, r.text
    assert r.headers["access-control-allow-origin"] == APP
    r = httpx.get(cors_server.url + r.json()["url"], headers=headers)
    assert r.status_code == 200 and r.content == b"hello"
    assert r.headers["access-control-allow-origin"] == APP
    assert "Content-Disposition" in r.headers["access-control-expose-headers"]


def test_an_origin_not_listed_is_refused(cors_server: ServerProcess) -> None:
    r = preflight(cors_server, "https://evil.example")
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(
        cors_server.url + "/api/v1/conversations",
        headers={**auth("ce"), "Origin": "https://evil.example"},
    )
    assert "access-control-allow-origin" not in r.headers  # the browser hides the answer


async def test_websocket_handshakes_are_checked_against_the_list(
    cors_server: ServerProcess,
) -> None:
    url = f"{cors_server.ws_url}?token={token('cw')}"
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    assert b"forbidden" in refused.value.response.body
    for origin in (APP, None, cors_server.url):  # listed, none (an app), the server's own
        ws = await websockets.connect(url, origin=origin)  # type: ignore[arg-type]
        await ws.recv()
        await ws.close()


def test_without_the_setting_no_cors_headers_are_sent(server: ServerProcess) -> None:
    r = preflight(server, APP)
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
    r = httpx.get(server.url + "/api/v1/conversations", headers={**auth("cn"), "Origin": APP})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_the_origin_list_is_checked_when_read() -> None:
    assert cors_origins(" http://a:3000/ ,https://b.example", production=True) == (
        "http://a:3000",
        "https://b.example",
    )
    assert cors_origins("*", production=False) == ("*",)
    # As browsers send them: lower case, no default port.
    assert cors_origins("https://App.Example.com:443,http://x:80,http://x:8080", False) == (
        "https://app.example.com",
        "http://x",
        "http://x:8080",
    )
    with pytest.raises(ConfigError, match="dev mode only"):
        cors_origins("*", production=True)
    with pytest.raises(ConfigError, match="not an origin"):
        cors_origins("app.example.com", production=False)
    with pytest.raises(ConfigError, match="not an origin"):
        cors_origins("https://app.example.com/path", production=False)


async def test_a_handshake_with_two_origin_headers_is_refused(cors_server: ServerProcess) -> None:
    raw = await RawClient.connect_raw(
        cors_server.port,
        f"GET /ws?token={token('cd')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Origin: {APP}\r\nOrigin: https://evil.example\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 400"), raw
    assert httpx.get(cors_server.url + "/health").status_code == 200  # and the server is fine


async def test_an_unexpected_error_still_carries_the_allow_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve_in_process(tmp_path, cors_origins=(APP,)) as ip:

        async def broken(*_: object, **__: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(ip.app.chat, "history", broken)
        async with httpx.AsyncClient(base_url=ip.url) as http:
            r = await http.get(
                "/api/v1/conversations/c_x/messages", headers={**auth("cx"), "Origin": APP}
            )
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal"
        assert r.headers["access-control-allow-origin"] == APP  # the page can read the error
