"""Domain errors to HTTP responses: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from hubbub.errors import HubbubError
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
    "unavailable": 503,
    "internal": 500,
}
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 426: "upgrade_required"}


def error_response(status: int, code: str, message: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(http_error(code, message), status, headers, media_type="application/json")


async def on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HubbubError)
    return error_response(STATUS.get(exc.code, 500), exc.code, exc.message)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "invalid")
    return error_response(exc.status_code, code, str(exc.detail))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error")
