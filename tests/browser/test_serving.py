"""How hubbub serves the web app and its dev sign-in (plain HTTP, no browser needed)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from hubbub.api.web import BUNDLE, STATIC_DIR, web_routes
from hubbub.config import Settings
from tests.browser.conftest import REQUIRED
from tests.support import SECRET, ServerProcess


@pytest.fixture
def built() -> None:
    if not (STATIC_DIR / BUNDLE).is_file():
        reason = "the web app is not built (make web)"
        pytest.fail(reason) if REQUIRED else pytest.skip(reason)


def test_page_and_files_headers(web_server: ServerProcess, built: None) -> None:
    with httpx.Client(base_url=web_server.url) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        for directive in (
            "default-src 'self'",
            "script-src 'self'",
            "connect-src 'self' ws: wss:",
            "img-src 'self' blob:",
            "object-src 'none'",
        ):
            assert directive in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert '<meta name="hubbub-env" content="dev">' in page.text

        # No inline script, no event-handler attribute: the CSP could not allow them anyway.
        scripts = re.findall(r"<script\b[^>]*>", page.text)
        assert scripts and all(" src=" in s for s in scripts)
        assert re.findall(r"<script\b[^>]*>\s*[^<\s]", page.text) == []
        assert re.findall(r"\son[a-z]+\s*=", page.text) == []

        assets = dict(re.findall(r'(?:src|href)="/static/([\w.-]+)\?v=(\w+)"', page.text))
        assert set(assets) == {"app.js", "app.css", "favicon.svg"}
        types = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"}
        for name, version in assets.items():
            tagged = http.get(f"/static/{name}?v={version}")
            assert tagged.status_code == 200
            assert tagged.headers["content-type"].startswith(types[name])
            assert tagged.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert tagged.headers["content-security-policy"] == csp
            assert tagged.headers["x-content-type-options"] == "nosniff"
            plain = http.get(f"/static/{name}")
            assert plain.headers["cache-control"] == "no-cache"
            again = http.get(f"/static/{name}", headers={"If-None-Match": plain.headers["etag"]})
            assert again.status_code == 304
        assert http.get("/static/nothing.js").status_code == 404
        assert http.get("/static/%2e%2e/%2e%2e/api/web.py").status_code == 404


def test_dev_token(web_server: ServerProcess) -> None:
    with httpx.Client(base_url=web_server.url) as http:
        r = http.post("/dev/token", json={"user_id": "dev-user", "name": "Dev User"})
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        tok = r.json()["token"]
        me = http.get("/api/v1/conversations", headers={"Authorization": f"Bearer {tok}"})
        assert me.status_code == 200
        for bad in (
            {"user_id": ""},
            {"user_id": "   "},
            {"user_id": "system"},
            {"user_id": "x" * 129},
            {"user_id": 7},
            {"user_id": "ok", "name": "n" * 201},
            {"user_id": "ok", "admin": True},
            {},
        ):
            r = http.post("/dev/token", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["error"]["code"] == "invalid"
        assert http.get("/dev/token").status_code == 405


def test_no_dev_token_in_production(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "prod", HUBBUB_ENV="production").start()
    try:
        r = httpx.post(server.url + "/dev/token", json={"user_id": "alice"})
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
        page = httpx.get(server.url + "/")
        assert '<meta name="hubbub-env" content="production">' in page.text or (
            page.status_code == 503
        )
    finally:
        server.stop()


async def test_not_built_page(tmp_path: Path) -> None:
    """Without the built bundle, / explains what to run instead of failing."""
    (tmp_path / "index.html").write_text("<!doctype html><title>x</title>")
    settings = Settings(jwt_secret=SECRET)
    for directory in (tmp_path, tmp_path / "none"):
        app = Starlette(routes=web_routes(settings, directory))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hubbub") as client:
            r = await client.get("/")
            assert r.status_code == 503
            assert r.headers["content-type"].startswith("text/html")
            assert "make web" in r.text
            assert "content-security-policy" in r.headers
            assert (await client.get("/static/app.js")).status_code == 404
