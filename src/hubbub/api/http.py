"""Request parsing and response encoding shared by the REST routes."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hubbub.errors import Invalid, TooLarge
from hubbub.protocol.bounds import DEPTH_MESSAGE, MAX_INT, has_nul, json_has_nul, nul_message

T = TypeVar("T")
MAX_BODY_BYTES = 256 * 1024
_encoder = msgspec.json.Encoder()


def json_response(value: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status, media_type="application/json")


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, refused as ``too_large`` past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, kind: type[T]) -> T:
    body = await read_body(request, MAX_BODY_BYTES)
    try:
        value = msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise Invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise Invalid(DEPTH_MESSAGE) from None
    if json_has_nul(body):
        raise Invalid(nul_message("text in the body"))
    return value


def check_text(value: str, what: str) -> str:
    """A path or query parameter, a header: text that the store can hold."""
    if has_nul(value):
        raise Invalid(nul_message(what))
    return value


def query_int(request: Request, name: str, default: int | None = None) -> int | None:
    """An integer query parameter, 0 to ``MAX_INT``; absent: ``default``."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # ASCII digits only: int() would also take signs, spaces, "_" and other
    # scripts' digits.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(MAX_INT)):
        raise Invalid(f"query parameter {name!r} must be an integer from 0 to {MAX_INT}")
    value = int(raw)
    if value > MAX_INT:
        raise Invalid(f"query parameter {name!r} must be an integer from 0 to {MAX_INT}")
    return value
