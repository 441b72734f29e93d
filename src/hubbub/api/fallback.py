"""The HTTP fallback transport's routes: ``GET /sse`` and ``POST /sse/{connection_id}``.

The stream and the session behind it are the gateway's (``gateway/stream.py``);
these routes authenticate like ``/ws`` (a bearer header, or ``?token=`` where
the browser's API allows no header), check the ``Origin`` like ``/ws``, and
hand a post's frames to its session, in this process or, through the broker,
in the one that holds the stream: a load balancer need not be sticky.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hubbub.api.errors import STATUS, domain_response, error_response
from hubbub.api.http import check_text, json_response, read_body
from hubbub.auth import Identity
from hubbub.errors import HubbubError, Invalid, NotFound, TooLarge

if TYPE_CHECKING:
    from hubbub.gateway.server import Gateway
    from hubbub.gateway.stream import Stream

SSE_PATH = "/sse"
POST_CEILING = 1 << 20  # bytes of frames in one post (and at most pending_commands frames)
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]


async def _identity(gateway: Gateway, request: Request, opens: bool = False) -> Identity:
    """Who posts, or (``opens``) who opens a stream: then the connection limits apply."""
    headers = request.headers
    peer = request.client.host if request.client else None
    return await gateway.admit(
        headers.get("origin"),
        headers.get("host"),
        request.query_params.get("token"),
        headers.get("authorization"),
        gateway.address(peer, headers.getlist) if opens else None,
    )


class StreamEndpoint:
    """``GET /sse``: one session, its frames as Server-Sent Events."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            identity = await _identity(self.gateway, Request(scope, receive), opens=True)
        except HubbubError as exc:
            await domain_response(exc)(scope, receive, send)
            return
        try:
            stream = self.gateway.open_stream(identity)
        except HubbubError as exc:  # shutting down
            await error_response(STATUS[exc.code], exc.code, exc.message)(scope, receive, send)
            return

        async def body(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        watcher = asyncio.create_task(_watch(receive, stream))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
            ended = await stream.run(body)
        finally:
            watcher.cancel()
            stream.finish()
        if ended:
            with contextlib.suppress(OSError):  # the client may be gone
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch(receive: Receive, stream: Stream) -> None:
    """End the stream's session when its client disconnects."""
    while (await receive())["type"] != "http.disconnect":
        pass
    stream.writer.gone()


def fallback_routes(gateway: Gateway) -> list[Route]:
    most = gateway.limits.pending_commands

    async def post(request: Request) -> Response:
        identity = await _identity(gateway, request)
        body = await read_body(request, POST_CEILING)
        if not body.isascii():
            try:
                body.decode()
            except UnicodeDecodeError as exc:
                raise Invalid(f"the body is not UTF-8 (byte {exc.start})") from None
        lines = body.splitlines()
        if len(lines) > most:
            raise TooLarge(f"at most {most} frames in one post")
        connection_id = check_text(request.path_params["connection_id"], "the connection id")
        if not await gateway.post(connection_id, identity.user_id, body):
            raise NotFound("no such stream session: open a new one and resume")
        return json_response({"accepted": sum(1 for line in lines if line.strip())}, 202)

    return [
        Route(SSE_PATH, StreamEndpoint(gateway), methods=["GET"]),
        Route(SSE_PATH + "/{connection_id}", post, methods=["POST"]),
    ]
