"""The REST application: routes built from the operations, health, the OpenAPI document."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from hubbub import __version__
from hubbub.api import errors
from hubbub.api.access import PUBLIC, Access
from hubbub.api.conversations import conversation_operations
from hubbub.api.fallback import fallback_routes
from hubbub.api.http import check_text, encode, json_response
from hubbub.api.messages import message_operations
from hubbub.api.openapi import Operation, build_spec
from hubbub.api.ops import Stats, counted, metrics_route, stats_operations
from hubbub.api.people import people_operations
from hubbub.api.push import push_operations
from hubbub.api.schema import Health
from hubbub.api.uploads import upload_operations
from hubbub.api.web import web_routes
from hubbub.errors import HubbubError
from hubbub.logs import REQUEST_ID
from hubbub.metrics import DETACHED, Metrics

# Cross-origin calls (HUBBUB_CORS_ORIGINS): what a browser may send and read.
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "X-Api-Key", "X-On-Behalf-Of"]
CORS_EXPOSED_HEADERS = ["Content-Disposition", "Content-Length", "Retry-After", "WWW-Authenticate"]
CORS_MAX_AGE = 3600  # seconds a browser may cache a preflight (Chromium keeps at most 7200)

if TYPE_CHECKING:
    from hubbub.auth import TokenVerifier
    from hubbub.config import Settings
    from hubbub.gateway.server import Gateway
    from hubbub.service.chat import ChatService
    from hubbub.service.conversations import ConversationService
    from hubbub.service.presence import PresenceService
    from hubbub.service.push import PushService
    from hubbub.service.uploads import UploadService

C = TypeVar("C")


class Api:
    """The REST API over the services, with the gateway's HTTP fallback and the web app.

    ``ping`` raises when the database does not answer; ``broker_healthy`` says
    whether the other processes are reached; ``connections`` counts this
    process's sessions (all three for ``/health``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        chat: ChatService,
        conversations: ConversationService,
        presence: PresenceService,
        uploads: UploadService,
        push: PushService,
        verifier: TokenVerifier,
        gateway: Gateway,
        ping: Callable[[], Awaitable[None]],
        broker_healthy: Callable[[], bool],
        connections: Callable[[], int],
        metrics: Metrics = DETACHED,
        stats: Callable[[], Awaitable[Stats]] | None = None,
    ) -> None:
        self.metrics = metrics
        self.stats = stats
        self.settings = settings
        self.chat = chat
        self.conversations = conversations
        self.presence = presence
        self.uploads = uploads
        self.push = push
        self.gateway = gateway
        self.ping = ping
        self.broker_healthy = broker_healthy
        self.connections = connections
        self.access = Access(verifier, settings.api_key, chat.seen)

    async def health(self, request: Request, caller: None) -> Response:
        try:
            await asyncio.wait_for(self.ping(), timeout=2.0)
            database, status = "ok", "ok"
        except (TimeoutError, HubbubError, OSError) as exc:
            database, status = f"error: {exc}", "unavailable"
        broker = "ok" if self.broker_healthy() else "unreachable"
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

    def operations(self) -> list[Operation[Any]]:
        return [
            Operation(
                "GET",
                "/health",
                "Liveness and database check",
                self.health,
                {200: Health, 503: Health},
                tag="operations",
                auth=PUBLIC,
            ),
            *conversation_operations(self.conversations),
            *message_operations(self.chat, self.metrics.rest),
            *people_operations(self.presence, self.conversations),
            *upload_operations(self.uploads),
            *push_operations(self.push),
            *(stats_operations(self.stats) if self.stats is not None else ()),
        ]

    def route(self, op: Operation[C]) -> Route:
        """The operation's route: admits what its ``auth`` declares, then runs its handler."""
        access, auth, handler = self.access, op.auth, op.handler

        async def endpoint(request: Request) -> Response:
            REQUEST_ID.set(secrets.token_hex(8))  # for the log records of this request
            caller = await access.admit(request.headers, auth)
            for name, value in request.path_params.items():
                if isinstance(value, str):
                    check_text(value, f"path parameter {name!r}")
            for name, value in request.query_params.multi_items():
                check_text(name + value, f"query parameter {name!r}")
            return await handler(request, caller)

        return Route(op.path, endpoint, methods=[op.method], name=handler.__name__)

    def app(self) -> ASGIApp:
        operations = self.operations()
        body = {"maxLength": self.settings.limits.max_body_chars}
        limits = {"PostMessage": {"body": body}, "EditBody": {"body": {"minLength": 1, **body}}}
        spec = encode(build_spec(operations, __version__, limits))

        async def openapi(request: Request) -> Response:
            return Response(spec, media_type="application/json")

        routes = [self.route(op) for op in operations]
        routes.append(Route("/openapi.json", openapi, methods=["GET"]))
        routes.append(metrics_route(self.metrics, self.settings.metrics_token))
        routes.append(Route("/ws", self.ws_without_upgrade, methods=["GET"]))
        routes.extend(fallback_routes(self.gateway))
        routes.extend(web_routes(self.settings))
        app = Starlette(
            routes=routes,
            exception_handlers=counted(
                {
                    HubbubError: errors.on_domain_error,
                    404: errors.on_http_error,
                    405: errors.on_http_error,
                    Exception: errors.on_unexpected,
                },
                self.metrics.rest,
            ),
        )
        origins = self.settings.cors_origins
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
