"""Operations endpoints: ``GET /api/v1/stats`` (the API key alone) and ``GET /metrics``.

``/metrics`` is the Prometheus text format of this process's registry
(``metrics.py``), outside ``/api`` and outside the OpenAPI document: it is
plain text, for a scraper, and guarded by its own optional bearer token
(``HUBBUB_METRICS_TOKEN``) rather than by the API's credentials.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hubbub.api.access import SERVER_ONLY, Server
from hubbub.api.errors import HTTP_CODES, error_response
from hubbub.api.http import json_response
from hubbub.api.openapi import Operation
from hubbub.errors import HubbubError
from hubbub.metrics import CONTENT_TYPE, Metrics, TransportMetrics

TOP_USERS = 10
"""Users listed in ``connections_per_user.top``."""
BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("1", 1, 1),
    ("2", 2, 2),
    ("3-5", 3, 5),
    ("6-10", 6, 10),
    ("11+", 11, 1 << 62),
)
"""``connections_per_user.histogram``: users by how many connections they have."""


class UserConnections(msgspec.Struct):
    user_id: str
    connections: int


class ConnectionsPerUser(msgspec.Struct):
    histogram: dict[str, int]
    """Users by their number of connections: ``1``, ``2``, ``3-5``, ``6-10``, ``11+``."""
    top: list[UserConnections]
    """The users with the most connections (at most 10), most first."""


class Cluster(msgspec.Struct):
    """Every process sharing this Redis (present only with Redis)."""

    processes: int
    online_users: int


class Stats(msgspec.Struct):
    """This process's connections and users (``cluster``: all processes, with Redis)."""

    node: str
    connections: int
    transports: dict[str, int]
    """Connections by transport: ``ws``, ``sse``."""
    users: int
    """Users with at least one connection to this process."""
    connections_per_user: ConnectionsPerUser
    cluster: Cluster | None = None


def per_user(counts: list[tuple[str, int]]) -> ConnectionsPerUser:
    histogram = dict.fromkeys((name for name, _, _ in BUCKETS), 0)
    for _, n in counts:
        for name, low, high in BUCKETS:
            if low <= n <= high:
                histogram[name] += 1
                break
    top = sorted(counts, key=lambda uc: (-uc[1], uc[0]))[:TOP_USERS]
    return ConnectionsPerUser(histogram, [UserConnections(u, n) for u, n in top])


def stats_operations(stats: Callable[[], Awaitable[Stats]]) -> list[Operation[Any]]:
    async def get_stats(request: Request, server: Server) -> Response:
        return json_response(await stats())

    return [
        Operation(
            "GET",
            "/api/v1/stats",
            "This process's connections and users (the app's backend: X-Api-Key alone)",
            get_stats,
            {200: Stats},
            errors=(403,),
            tag="operations",
            auth=SERVER_ONLY,
        )
    ]


def metrics_route(metrics: Metrics, token: str | None) -> Route:
    expected = None if token is None else f"Bearer {token}".encode()

    async def get_metrics(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return error_response(401, "unauthorized", "GET /metrics needs its bearer token")
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Route("/metrics", get_metrics, methods=["GET"], name="metrics")


ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def refusal_code(exc: Exception) -> str:
    """The error code an error response carries for ``exc``."""
    if isinstance(exc, HubbubError):
        return exc.code
    if isinstance(exc, HTTPException):
        return HTTP_CODES.get(exc.status_code, "invalid")
    return "internal"


def counted(
    handlers: dict[Any, ExceptionHandler], metrics: TransportMetrics
) -> dict[Any, ExceptionHandler]:
    """The same exception handlers, each counting its answer as a refusal by code."""

    def wrap(handler: ExceptionHandler) -> ExceptionHandler:
        async def handle(request: Request, exc: Exception) -> Response:
            metrics.refusal(refusal_code(exc))
            return await handler(request, exc)

        return handle

    return {key: wrap(handler) for key, handler in handlers.items()}
