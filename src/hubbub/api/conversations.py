"""REST: conversations, membership, rooms, hiding."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from hubbub.api.access import USER, User
from hubbub.api.http import json_response, query_int, read_json
from hubbub.api.openapi import Operation, Query
from hubbub.api.schema import (
    ConversationBody,
    ConversationList,
    CreateConversation,
    Done,
    MembersBody,
    RenameBody,
    RoleBody,
    RoomList,
)
from hubbub.errors import Invalid
from hubbub.protocol.bounds import MAX_INT
from hubbub.service.conversations import LIST_PAGE, MAX_LIST_PAGE

if TYPE_CHECKING:
    from hubbub.service.conversations import ConversationService

CONV = "/api/v1/conversations"


def conversation_operations(service: ConversationService) -> list[Operation[Any]]:
    async def create_conversation(request: Request, user: User) -> Response:
        me = user.id
        body = await read_json(request, CreateConversation)
        if body.kind == "direct":
            others = [m for m in dict.fromkeys(body.members) if m != me]
            if len(others) != 1:
                raise Invalid("a direct conversation has exactly one other member")
            conversation, created = await service.open_direct(me, others[0])
            return json_response(ConversationBody(conversation), 201 if created else 200)
        if body.title is None:
            raise Invalid(f"a {body.kind} needs a title")
        made = await service.create(me, body.kind, body.title, body.members)
        return json_response(ConversationBody(made), 201)

    async def list_conversations(request: Request, user: User) -> Response:
        limit = query_int(request, "limit", LIST_PAGE)
        assert limit is not None
        cursor = request.query_params.get("cursor")
        page, after = await service.list_page(user.id, limit, cursor)
        return json_response(ConversationList(page, after))

    async def get_conversation(request: Request, user: User) -> Response:
        me = user.id
        cid = request.path_params["conversation_id"]
        return json_response(ConversationBody(await service.get(me, cid)))

    async def rename_conversation(request: Request, user: User) -> Response:
        me = user.id
        body = await read_json(request, RenameBody)
        cid = request.path_params["conversation_id"]
        return json_response(ConversationBody(await service.rename(me, cid, body.title)))

    async def add_members(request: Request, user: User) -> Response:
        me = user.id
        body = await read_json(request, MembersBody)
        cid = request.path_params["conversation_id"]
        return json_response(ConversationBody(await service.add_members(me, cid, body.members)))

    async def remove_member(request: Request, user: User) -> Response:
        me = user.id
        p = request.path_params
        await service.remove_member(me, p["conversation_id"], p["user_id"])
        return json_response(Done(ok=True))

    async def set_role(request: Request, user: User) -> Response:
        me = user.id
        body = await read_json(request, RoleBody)
        p = request.path_params
        made = await service.set_role(me, p["conversation_id"], p["user_id"], body.role)
        return json_response(ConversationBody(made))

    async def leave_conversation(request: Request, user: User) -> Response:
        me = user.id
        await service.remove_member(me, request.path_params["conversation_id"], me)
        return json_response(Done(ok=True))

    async def hide_conversation(request: Request, user: User) -> Response:
        me = user.id
        hidden = request.method == "POST"
        await service.set_hidden(me, request.path_params["conversation_id"], hidden)
        return json_response(Done(ok=True))

    async def list_rooms(request: Request, user: User) -> Response:
        me = user.id
        limit = query_int(request, "limit", 50)
        offset = query_int(request, "offset", 0)
        assert limit is not None and offset is not None
        return json_response(RoomList(await service.rooms(me, limit, offset)))

    async def join_room(request: Request, user: User) -> Response:
        me = user.id
        cid = request.path_params["conversation_id"]
        return json_response(ConversationBody(await service.join_room(me, cid)))

    one = CONV + "/{conversation_id}"
    changed = (403, 404, 422)
    return [
        Operation(
            "POST",
            CONV,
            "Open a direct conversation, or create a group or a room",
            create_conversation,
            {201: ConversationBody, 200: ConversationBody},
            body=CreateConversation,
            errors=(403, 413, 422),
            auth=USER,
        ),
        Operation(
            "GET",
            CONV,
            "The caller's conversations (not hidden), newest activity first, a page at a time",
            list_conversations,
            {200: ConversationList},
            errors=(422,),
            query=[
                Query(
                    "limit",
                    f"Page size, 1 to {MAX_LIST_PAGE} (default {LIST_PAGE})",
                    minimum=1,
                    maximum=MAX_LIST_PAGE,
                ),
                Query(
                    "cursor",
                    "The next_cursor of the previous page (opaque)",
                    "string",
                    max_length=160,
                ),
            ],
            auth=USER,
        ),
        Operation(
            "GET",
            one,
            "One conversation with its members and their read pointers",
            get_conversation,
            {200: ConversationBody},
            errors=(403, 404),
            auth=USER,
        ),
        Operation(
            "PATCH",
            one,
            "Rename a group or room (owner or admin)",
            rename_conversation,
            {200: ConversationBody},
            body=RenameBody,
            errors=changed,
            auth=USER,
        ),
        Operation(
            "POST",
            one + "/members",
            "Add members (owner or admin)",
            add_members,
            {200: ConversationBody},
            body=MembersBody,
            errors=changed,
            auth=USER,
        ),
        Operation(
            "DELETE",
            one + "/members/{user_id}",
            "Remove a member (owner; admin for plain members); your own id leaves",
            remove_member,
            {200: Done},
            errors=changed,
            auth=USER,
        ),
        Operation(
            "PUT",
            one + "/members/{user_id}/role",
            "Set a member's role (owner only; giving owner transfers ownership)",
            set_role,
            {200: ConversationBody},
            body=RoleBody,
            errors=changed,
            auth=USER,
        ),
        Operation(
            "POST",
            one + "/leave",
            "Leave a group or room",
            leave_conversation,
            {200: Done},
            errors=changed,
            auth=USER,
        ),
        Operation(
            "POST",
            one + "/hide",
            "Hide for yourself until the next message",
            hide_conversation,
            {200: Done},
            errors=(403, 404),
            auth=USER,
        ),
        Operation(
            "DELETE",
            one + "/hide",
            "Show a hidden conversation again",
            hide_conversation,
            {200: Done},
            errors=(403, 404),
            auth=USER,
        ),
        Operation(
            "GET",
            "/api/v1/rooms",
            "Public rooms, newest activity first",
            list_rooms,
            {200: RoomList},
            query=[
                Query("limit", "1 to 100, default 50", minimum=1, maximum=100),
                Query("offset", "Rooms to skip", minimum=0, maximum=MAX_INT),
            ],
            errors=(422,),
            auth=USER,
        ),
        Operation(
            "POST",
            "/api/v1/rooms/{conversation_id}/join",
            "Join a room",
            join_room,
            {200: ConversationBody},
            errors=(404, 413, 422),
            auth=USER,
        ),
    ]
