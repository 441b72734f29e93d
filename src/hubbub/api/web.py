"""The chat web app (``src/hubbub/web``): its page at ``/``, its files, the dev sign-in.

The page and every file are sent with a Content-Security-Policy that allows
scripts, styles and connections to this origin only (no inline script), and
``nosniff``. The app is built by ``make web`` into ``web/static/app.js``;
without it ``/`` answers a page saying so. ``POST /dev/token`` mints a token
for a typed user id in dev mode only: in production the route does not exist.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from pathlib import Path

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from hubbub.api.http import check_text, json_response, read_json
from hubbub.auth import MAX_NAME, mint_token
from hubbub.config import Settings
from hubbub.errors import Invalid
from hubbub.service.conversations import check_user_id

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"
BUNDLE = "app.js"
DEV_TOKEN_TTL = 3600  # seconds; the app asks for a fresh one before it expires

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "media-src 'self' blob:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
IMMUTABLE = "public, max-age=31536000, immutable"
_ASSET = re.compile(r'((?:src|href)="/static/([\w.-]+))"')

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hubbub: web app not built</title></head>
<body><h1>The web app is not built</h1>
<p>hubbub is running, but the files of its chat web app are missing from
<code>{directory}</code>.</p>
<p>Run <code>make web</code> (or <code>make run</code>, which builds it first) in the
repository, then reload this page. The REST API, <code>/ws</code> and <code>/sse</code>
work without it.</p></body></html>
"""


class DevTokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    user_id: str
    name: str | None = None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


class WebApp:
    """Serves the page and its files from ``directory``."""

    def __init__(self, settings: Settings, directory: Path = STATIC_DIR) -> None:
        self.settings = settings
        self.directory = directory
        self._page: tuple[tuple[tuple[str, float], ...], bytes] | None = None
        self.files = StaticFiles(directory=directory, check_dir=False)

    def _render(self) -> bytes | None:
        """index.html, its assets tagged with their digest (cached until a file changes)."""
        index = self.directory / "index.html"
        if not index.is_file() or not (self.directory / BUNDLE).is_file():
            return None
        try:
            stamp = tuple(sorted((e.name, e.stat().st_mtime) for e in os.scandir(self.directory)))
        except OSError:
            return None
        if self._page is None or self._page[0] != stamp:
            text = index.read_text("utf-8")

            def tag(match: re.Match[str]) -> str:
                asset = self.directory / match.group(2)
                version = _digest(asset) if asset.is_file() else "0"
                return f'{match.group(1)}?v={version}"'

            text = _ASSET.sub(tag, text).replace(
                "{{env}}", html.escape("production" if self.settings.production else "dev")
            )
            self._page = (stamp, text.encode())
        return self._page[1]

    async def index(self, request: Request) -> Response:
        page = self._render()
        if page is None:
            body = NOT_BUILT.format(directory=html.escape(str(self.directory)))
            return Response(body, 503, _headers("no-store"), media_type="text/html")
        return Response(page, 200, _headers("no-cache"), media_type="text/html")

    async def static(self, request: Request) -> Response:
        """A file of the app: immutable when asked for by its digest, else revalidated."""
        path = os.path.normpath(check_text(request.path_params["path"], "the path"))
        response = await self.files.get_response(path, request.scope)
        versioned = request.query_params.get("v") is not None
        response.headers.update(_headers(IMMUTABLE if versioned else "no-cache"))
        return response

    async def dev_token(self, request: Request) -> Response:
        """``POST /dev/token {"user_id", "name"}`` -> ``{"token"}`` (dev mode only)."""
        body = await read_json(request, DevTokenRequest)
        user_id = check_user_id(body.user_id.strip(), "user_id")
        name = (body.name or "").strip() or None
        if name is not None and len(name) > MAX_NAME:
            raise Invalid(f"name must be at most {MAX_NAME} characters")
        assert self.settings.jwt_secret is not None  # routes() offers it only then
        token = mint_token(self.settings.jwt_secret, user_id, name=name, ttl=DEV_TOKEN_TTL)
        response = json_response({"token": token})
        response.headers["Cache-Control"] = "no-store"
        return response

    def routes(self) -> list[Route]:
        routes = [
            Route("/", self.index, methods=["GET", "HEAD"]),
            Route("/static/{path:path}", self.static, methods=["GET", "HEAD"]),
        ]
        hs256 = "HS256" in self.settings.jwt_algorithms and self.settings.jwt_secret
        if not self.settings.production and hs256:
            routes.append(Route("/dev/token", self.dev_token, methods=["POST"]))
        return routes


def _headers(cache: str) -> dict[str, str]:
    return {**SECURITY_HEADERS, "Cache-Control": cache}


def web_routes(settings: Settings, directory: Path = STATIC_DIR) -> list[Route]:
    """The routes of the web app, for ``Api.app()``."""
    return WebApp(settings, directory).routes()
