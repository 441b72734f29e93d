"""REST: history, sending, edits, deletes, receipts, unread counts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from hubbub.api.access import USER, USER_OR_SERVER, Credential, Server, User
from hubbub.api.http import json_response, query_int, read_json
from hubbub.api.openapi import Operation, Query
from hubbub.api.schema import (
    EditBody,
    MarkBody,
    MessageBody,
    MessagePage,
    PostMessage,
    ReactionBody,
    ReceiptBody,
    Unread,
    VersionList,
)
from hubbub.errors import HubbubError
from hubbub.metrics import DETACHED, TransportMetrics
from hubbub.models import SearchPage, SendItem
from hubbub.protocol.bounds import MAX_INT

if TYPE_CHECKING:
    from hubbub.service.chat import ChatService

CONV = "/api/v1/conversations/{conversation_id}"
MSG = "/api/v1/messages/{message_id}"


def message_operations(
    chat: ChatService, metrics: TransportMetrics = DETACHED.rest
) -> list[Operation[Any]]:
    async def list_messages(request: Request, user: User) -> Response:
        page = await chat.history(
            user.id,
            request.path_params["conversation_id"],
            before=query_int(request, "before"),
            after=query_int(request, "after"),
            limit=query_int(request, "limit"),
        )
        return json_response(
            MessagePage(messages=page.messages, has_more=page.has_more, receipts=page.receipts)
        )

    async def post_message(request: Request, caller: User | Server) -> Response:
        body = await read_json(request, PostMessage)
        item = SendItem(
            request.path_params["conversation_id"],
            body.body,
            body.client_msg_id,
            kind=body.kind,
            reply_to=body.reply_to,
            attachments=tuple(body.attachments),
        )
        started = time.perf_counter()
        try:
            if isinstance(caller, Server):  # the app's backend, by API key
                message, created = await chat.post_system(item)
            else:
                by_key = caller.by is Credential.ON_BEHALF  # the API key, for a user
                message, created = await chat.send_one(caller.id, item, by_key=by_key)
        except HubbubError as exc:
            metrics.send_failed.inc(exc.code)
            raise
        (metrics.sent if created else metrics.sent_duplicate).inc()
        metrics.ack_latency.observe(time.perf_counter() - started)
        return json_response(MessageBody(message), 201 if created else 200)

    async def react(request: Request, user: User) -> Response:
        me = user.id
        p = request.path_params
        count, changed = await chat.react(me, p["message_id"], p["emoji"], request.method == "PUT")
        return json_response(ReactionBody(changed=changed, count=count))

    async def search(request: Request, user: User) -> Response:
        me = user.id
        found = await chat.search(
            me,
            request.query_params.get("q", ""),
            request.query_params.get("conversation_id") or None,
            query_int(request, "limit", 20) or 0,
            query_int(request, "offset", 0) or 0,
        )
        return json_response(found)

    async def get_message(request: Request, user: User) -> Response:
        me = user.id
        return json_response(MessageBody(await chat.message(me, request.path_params["message_id"])))

    async def edit_message(request: Request, user: User) -> Response:
        me = user.id
        body = await read_json(request, EditBody)
        edited = await chat.edit(me, request.path_params["message_id"], body.body)
        return json_response(MessageBody(edited))

    async def delete_message(request: Request, user: User) -> Response:
        me = user.id
        return json_response(MessageBody(await chat.delete(me, request.path_params["message_id"])))

    async def message_history(request: Request, user: User) -> Response:
        me = user.id
        versions = await chat.versions(me, request.path_params["message_id"])
        return json_response(VersionList(versions))

    async def mark(request: Request, user: User) -> Response:
        me = user.id
        body = await read_json(request, MarkBody)
        kind = request.url.path.rsplit("/", 1)[1]
        receipt = await chat.mark(me, request.path_params["conversation_id"], kind, body.seq)
        return json_response(ReceiptBody(moved=receipt is not None, receipt=receipt))

    async def unread(request: Request, user: User) -> Response:
        counts = await chat.unread(user.id)
        return json_response(Unread(total=sum(counts.values()), conversations=counts))

    most = chat.limits.page_max
    page = [
        Query(
            "before",
            "Only messages with a smaller seq (page backwards)",
            minimum=0,
            maximum=MAX_INT,
        ),
        Query(
            "after", "Only messages with a greater seq (page forwards)", minimum=0, maximum=MAX_INT
        ),
        Query("limit", f"Page size, 1 to {most} (default 50)", minimum=1, maximum=most),
    ]
    refused = (403, 404, 422)
    return [
        Operation(
            "GET",
            CONV + "/messages",
            "History, ascending seq, cursor-paginated",
            list_messages,
            {200: MessagePage},
            query=page,
            errors=refused,
            auth=USER,
        ),
        Operation(
            "POST",
            CONV + "/messages",
            "Send a message (idempotent per client_msg_id)",
            post_message,
            {201: MessageBody, 200: MessageBody},
            body=PostMessage,
            errors=(403, 404, 413, 422, 429),
            auth=USER_OR_SERVER,
        ),
        Operation(
            "GET", MSG, "One message", get_message, {200: MessageBody}, errors=(403, 404), auth=USER
        ),
        Operation(
            "PATCH",
            MSG,
            "Edit your message",
            edit_message,
            {200: MessageBody},
            body=EditBody,
            errors=(403, 404, 413, 422),
            auth=USER,
        ),
        Operation(
            "DELETE",
            MSG,
            "Delete a message (sender, or group owner/admin)",
            delete_message,
            {200: MessageBody},
            errors=(403, 404),
            auth=USER,
        ),
        Operation(
            "GET",
            MSG + "/history",
            "Earlier versions of an edited message",
            message_history,
            {200: VersionList},
            errors=(403, 404),
            auth=USER,
        ),
        Operation(
            "POST",
            CONV + "/read",
            "Move your read pointer forward",
            mark,
            {200: ReceiptBody},
            body=MarkBody,
            errors=refused,
            auth=USER,
        ),
        Operation(
            "POST",
            CONV + "/delivered",
            "Move your delivered pointer forward",
            mark,
            {200: ReceiptBody},
            body=MarkBody,
            errors=refused,
            auth=USER,
        ),
        Operation(
            "GET",
            "/api/v1/unread",
            "Unread counts: total and per conversation",
            unread,
            {200: Unread},
            auth=USER,
        ),
        Operation(
            "PUT",
            MSG + "/reactions/{emoji}",
            "React to a message",
            react,
            {200: ReactionBody},
            errors=refused,
            auth=USER,
        ),
        Operation(
            "DELETE",
            MSG + "/reactions/{emoji}",
            "Take a reaction back",
            react,
            {200: ReactionBody},
            errors=refused,
            auth=USER,
        ),
        Operation(
            "GET",
            "/api/v1/search",
            "Full-text search in your conversations, ranked",
            search,
            {200: SearchPage},
            query=[
                Query(
                    "q", "Words that must all appear", "string", True, min_length=1, max_length=200
                ),
                Query("conversation_id", "Only this conversation", "string"),
                Query("limit", f"1 to {most}, default 20", minimum=1, maximum=most),
                Query(
                    "offset",
                    "Results to skip (next_offset of the last page)",
                    minimum=0,
                    maximum=MAX_INT,
                ),
            ],
            errors=(403, 404, 422),
            auth=USER,
        ),
    ]
