"""REST routes: parse and authenticate, call the service, encode the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hubbub import __version__
from hubbub.api import errors
from hubbub.api.openapi import Operation, Query, build_spec
from hubbub.api.schema import (
    ConversationBody,
    ConversationList,
    CreateConversation,
    Health,
    MessageBody,
    MessagePage,
    PostMessage,
)
from hubbub.auth import Identity, TokenVerifier
from hubbub.errors import HubbubError, Invalid, TooLarge
from hubbub.service.chat import ChatService
from hubbub.service.models import SendItem

T = TypeVar("T")
MAX_BODY_BYTES = 256 * 1024
_encoder = msgspec.json.Encoder()


def json_response(value: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status, media_type="application/json")


async def read_json(request: Request, kind: type[T]) -> T:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise TooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        return msgspec.json.decode(b"".join(chunks), type=kind)
    except msgspec.ValidationError as exc:
        raise Invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"malformed JSON: {exc}") from None


def query_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise Invalid(f"query parameter {name!r} must be an integer") from None


class Api:
    def __init__(
        self,
        service: ChatService,
        verifier: TokenVerifier,
        connections: Callable[[], int],
    ) -> None:
        self.service = service
        self.verifier = verifier
        self.connections = connections

    async def identity(self, request: Request) -> Identity:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        identity = self.verifier.verify(token)
        await self.service.seen(identity)
        return identity

    # Handlers ------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        try:
            await asyncio.wait_for(self.service.store.ping(), timeout=2.0)
            database, status = "ok", "ok"
        except (TimeoutError, HubbubError, OSError) as exc:
            database, status = f"error: {exc}", "unavailable"
        body = Health(
            status=status,  # type: ignore[arg-type]
            database=database,
            connections=self.connections(),
            version=__version__,
        )
        return json_response(body, 200 if status == "ok" else 503)

    async def create_conversation(self, request: Request) -> Response:
        me = (await self.identity(request)).user_id
        body = await read_json(request, CreateConversation)
        if body.kind == "direct":
            others = [m for m in dict.fromkeys(body.members) if m != me]
            if len(others) != 1:
                raise Invalid("a direct conversation has exactly one other member")
            conversation, created = await self.service.open_direct(me, others[0])
            return json_response(ConversationBody(conversation), 201 if created else 200)
        if body.title is None:
            raise Invalid("a group needs a title")
        group = await self.service.create_group(me, body.title, body.members)
        return json_response(ConversationBody(group), 201)

    async def list_conversations(self, request: Request) -> Response:
        me = (await self.identity(request)).user_id
        return json_response(ConversationList(await self.service.conversations(me)))

    async def get_conversation(self, request: Request) -> Response:
        me = (await self.identity(request)).user_id
        cid = request.path_params["conversation_id"]
        return json_response(ConversationBody(await self.service.get_conversation(me, cid)))

    async def list_messages(self, request: Request) -> Response:
        me = (await self.identity(request)).user_id
        page = await self.service.history(
            me,
            request.path_params["conversation_id"],
            before=query_int(request, "before"),
            after=query_int(request, "after"),
            limit=query_int(request, "limit"),
        )
        return json_response(MessagePage(messages=page.messages, has_more=page.has_more))

    async def post_message(self, request: Request) -> Response:
        me = (await self.identity(request)).user_id
        body = await read_json(request, PostMessage)
        item = SendItem(request.path_params["conversation_id"], body.body, body.client_msg_id)
        message, created = await self.service.send_one(me, item)
        return json_response(MessageBody(message), 201 if created else 200)

    async def ws_without_upgrade(self, request: Request) -> Response:
        return errors.error_response(
            426, "upgrade_required", "/ws speaks WebSocket: send an Upgrade request"
        )

    # Wiring --------------------------------------------------------------

    def operations(self) -> list[Operation]:
        conv = "/api/v1/conversations"
        page = [
            Query("before", "Only messages with a smaller seq (page backwards)"),
            Query("after", "Only messages with a greater seq (page forwards)"),
            Query("limit", "Page size, 1 to 100 (default 50)"),
        ]
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
            Operation(
                "POST",
                conv,
                "Open a direct conversation or create a group",
                self.create_conversation,
                {201: ConversationBody, 200: ConversationBody},
                body=CreateConversation,
                errors=(413, 422),
            ),
            Operation(
                "GET",
                conv,
                "The caller's conversations, newest activity first",
                self.list_conversations,
                {200: ConversationList},
            ),
            Operation(
                "GET",
                conv + "/{conversation_id}",
                "One conversation with its members",
                self.get_conversation,
                {200: ConversationBody},
                errors=(403, 404),
            ),
            Operation(
                "GET",
                conv + "/{conversation_id}/messages",
                "History, ascending seq, cursor-paginated",
                self.list_messages,
                {200: MessagePage},
                query=page,
                errors=(403, 404, 422),
            ),
            Operation(
                "POST",
                conv + "/{conversation_id}/messages",
                "Send a message (idempotent per client_msg_id)",
                self.post_message,
                {201: MessageBody, 200: MessageBody},
                body=PostMessage,
                errors=(403, 404, 413, 422),
            ),
        ]

    def app(self) -> Starlette:
        operations = self.operations()
        spec = _encoder.encode(build_spec(operations, __version__))

        async def openapi(request: Request) -> Response:
            return Response(spec, media_type="application/json")

        routes = [Route(op.path, op.handler, methods=[op.method]) for op in operations]
        routes.append(Route("/openapi.json", openapi, methods=["GET"]))
        routes.append(Route("/ws", self.ws_without_upgrade, methods=["GET"]))
        return Starlette(
            routes=routes,
            exception_handlers={
                HubbubError: errors.on_domain_error,
                404: errors.on_http_error,
                405: errors.on_http_error,
                Exception: errors.on_unexpected,
            },
        )
