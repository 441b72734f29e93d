"""REST: presence and blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from hubbub.api.access import USER, User
from hubbub.api.http import json_response
from hubbub.api.openapi import Operation, Query
from hubbub.api.schema import BlockList, Done, OnlineCount, PresenceList
from hubbub.errors import Invalid

if TYPE_CHECKING:
    from hubbub.service.conversations import ConversationService
    from hubbub.service.presence import PresenceService

MAX_PRESENCE_USERS = 100


def people_operations(
    presence: PresenceService, conversations: ConversationService
) -> list[Operation[Any]]:
    async def get_presence(request: Request, user: User) -> Response:
        me = user.id
        users = request.query_params.getlist("user")
        if not users or len(users) > MAX_PRESENCE_USERS:
            raise Invalid(f"name 1 to {MAX_PRESENCE_USERS} users with ?user=")
        found = await presence.lookup(me, users)
        return json_response({"presence": found})

    async def online_count(request: Request, user: User) -> Response:
        found = await presence.online_count(user.id, request.path_params["conversation_id"])
        return json_response(found)

    async def block_user(request: Request, user: User) -> Response:
        me = user.id
        if request.method == "POST":
            await conversations.block(me, request.path_params["user_id"])
        else:
            await conversations.unblock(me, request.path_params["user_id"])
        return json_response(Done(ok=True))

    async def list_blocks(request: Request, user: User) -> Response:
        me = user.id
        return json_response(BlockList(await conversations.blocked(me)))

    block = "/api/v1/blocks/{user_id}"
    return [
        Operation(
            "GET",
            "/api/v1/presence",
            "Online status and last seen of users you share a conversation with",
            get_presence,
            {200: PresenceList},
            query=[
                Query(
                    "user",
                    f"A user id; repeat for several (1 to {MAX_PRESENCE_USERS})",
                    "string",
                    True,
                    min_length=1,
                    max_length=128,
                )
            ],
            errors=(422,),
            auth=USER,
        ),
        Operation(
            "GET",
            "/api/v1/conversations/{conversation_id}/presence",
            "How many members of a conversation are online",
            online_count,
            {200: OnlineCount},
            errors=(404,),
            auth=USER,
        ),
        Operation(
            "POST",
            block,
            "Block a user",
            block_user,
            {200: Done},
            errors=(422,),
            tag="people",
            auth=USER,
        ),
        Operation(
            "DELETE",
            block,
            "Unblock a user",
            block_user,
            {200: Done},
            errors=(422,),
            tag="people",
            auth=USER,
        ),
        Operation(
            "GET",
            "/api/v1/blocks",
            "Users you have blocked",
            list_blocks,
            {200: BlockList},
            tag="people",
            auth=USER,
        ),
    ]
