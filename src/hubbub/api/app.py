"""The REST application: authentication, health, the OpenAPI document, wiring."""

from __future__ import annotations

import asyncio
import hmac
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from hubbub import __version__
from hubbub.api import errors
from hubbub.api.fallback import fallback_routes
from hubbub.api.http import encode, json_response
from hubbub.api.openapi import Operation, build_spec
from hubbub.api.schema import Health
from hubbub.api.web import web_routes
from hubbub.auth import Identity
from hubbub.errors import Forbidden, HubbubError, Unauthorized
from hubbub.service.chat import SYSTEM_SENDER as SERVER
from hubbub.service.conversations import check_user_id

# Cross-origin calls (HUBBUB_CORS_ORIGINS): what a browser may send and read.
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "X-Api-Key", "X-On-Behalf-Of"]
CORS_EXPOSED_HEADERS = ["Content-Disposition", "Content-Length", "Retry-After", "WWW-Authenticate"]
CORS_MAX_AGE = 3600  # seconds a browser may cache a preflight (Chromium keeps at most 7200)

if TYPE_CHECKING:
    from hubbub.server import Hubbub


class Api:
    def __init__(self, hubbub: Hubbub, connections: Callable[[], int]) -> None:
        self.hubbub = hubbub
        self.chat = hubbub.chat
        self.conversations = hubbub.conversations
        self.presence = hubbub.presence
        self.uploads = hubbub.uploads
        self.connections = connections

    async def user(self, request: Request) -> str:
        return (await self.identity(request)).user_id

    async def identity(self, request: Request) -> Identity:
        """The caller: a user by JWT, or the app's backend by API key.

        With ``X-Api-Key``, ``X-On-Behalf-Of: USER`` acts as that user on any
        endpoint; without it the caller is the server itself, which may only
        post system messages.
        """
        key = request.headers.get("x-api-key")
        if key is not None:
            expected = self.hubbub.settings.api_key
            if not expected or not hmac.compare_digest(key.encode(), expected.encode()):
                raise Unauthorized("invalid API key")
            on_behalf = request.headers.get("x-on-behalf-of")
            if on_behalf is not None:
                return Identity(check_user_id(on_behalf, "X-On-Behalf-Of"), None, math.inf)
            if request.url.path.endswith("/messages") and request.method == "POST":
                return Identity(SERVER, None, math.inf)
            raise Forbidden("with an API key, name the user in X-On-Behalf-Of")
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        identity = self.hubbub.verifier.verify(token)
        await self.chat.seen(identity)
        return identity

    async def health(self, request: Request) -> Response:
        try:
            await asyncio.wait_for(self.hubbub.store.ping(), timeout=2.0)
            database, status = "ok", "ok"
        except (TimeoutError, HubbubError, OSError) as exc:
            database, status = f"error: {exc}", "unavailable"
        broker = "ok" if self.hubbub.broker.healthy else "unreachable"
        if status == "ok" and broker != "ok":
            status = "degraded"  # serving local connections; other processes not reached
        body = Health(
            status=status,  # type: ignore[arg-type]
            database=database,
            broker=broker,
            connections=self.connections(),
            version=__version__,
        )
        return json_response(body, 503 if status == "unavailable" else 200)

    async def ws_without_upgrade(self, request: Request) -> Response:
        return errors.error_response(
            426, "upgrade_required", "/ws speaks WebSocket: send an Upgrade request"
        )

    def operations(self) -> list[Operation]:
        from hubbub.api.conversations import conversation_operations
        from hubbub.api.messages import message_operations
        from hubbub.api.people import people_operations
        from hubbub.api.uploads import upload_operations

        return [
            Operation(
                "GET",
                "/health",
                "Liveness and database check",
                self.health,
                {200: Health, 503: Health},
                auth=False,
                tag="operations",
            ),
            *conversation_operations(self),
            *message_operations(self),
            *people_operations(self),
            *upload_operations(self),
        ]

    def app(self) -> ASGIApp:
        operations = self.operations()
        spec = encode(build_spec(operations, __version__))

        async def openapi(request: Request) -> Response:
            return Response(spec, media_type="application/json")

        routes = [Route(op.path, op.handler, methods=[op.method]) for op in operations]
        routes.append(Route("/openapi.json", openapi, methods=["GET"]))
        routes.append(Route("/ws", self.ws_without_upgrade, methods=["GET"]))
        routes.extend(fallback_routes(self.hubbub.gateway))
        routes.extend(web_routes(self.hubbub.settings))
        app = Starlette(
            routes=routes,
            exception_handlers={
                HubbubError: errors.on_domain_error,
                404: errors.on_http_error,
                405: errors.on_http_error,
                Exception: errors.on_unexpected,
            },
        )
        origins = self.hubbub.settings.cors_origins
        if not origins:  # no CORS headers: browsers allow only the same origin
            return app
        # Outside Starlette's own middleware, so that its 500 answers carry the
        # headers too (the page can then read them).
        return CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=sorted({op.method for op in operations}),
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            allow_credentials=False,  # bearer tokens, never cookies
            max_age=CORS_MAX_AGE,
        )
