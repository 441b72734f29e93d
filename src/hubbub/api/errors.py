"""Domain errors to HTTP responses: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from hubbub.errors import HubbubError
from hubbub.limits.quota import retry_after
from hubbub.protocol.events import http_error

log = logging.getLogger("hubbub.api")

STATUS = {
    "invalid": 422,
    "unknown_type": 422,
    "too_large": 413,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "rate_limited": 429,
    "too_many_connections": 429,
    "unavailable": 503,
    "internal": 500,
}
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 426: "upgrade_required"}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return Response(http_error(code, message), status, headers, media_type="application/json")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at this request's path."""
    router = getattr(request.app, "router", None)
    methods: set[str] = set()
    for route in getattr(router, "routes", ()):
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= route.methods
    return sorted(methods)


async def on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HubbubError)
    return domain_response(exc)


def domain_response(exc: HubbubError) -> Response:
    """A domain error as its response; a rate limit says when to retry (``Retry-After``)."""
    headers = retry_after(exc) or None
    return error_response(STATUS.get(exc.code, 500), exc.code, exc.message, headers)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "invalid")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
    return error_response(exc.status_code, code, str(exc.detail), headers or None)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error")
