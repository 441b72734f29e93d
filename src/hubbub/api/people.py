"""REST: presence and blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from hubbub.api.http import json_response
from hubbub.api.openapi import Operation, Query
from hubbub.api.schema import BlockList, Done, PresenceList
from hubbub.errors import Invalid

if TYPE_CHECKING:
    from hubbub.api.app import Api

MAX_PRESENCE_USERS = 100


def people_operations(api: Api) -> list[Operation]:
    async def get_presence(request: Request) -> Response:
        me = await api.user(request)
        users = request.query_params.getlist("user")
        if not users or len(users) > MAX_PRESENCE_USERS:
            raise Invalid(f"name 1 to {MAX_PRESENCE_USERS} users with ?user=")
        found = await api.presence.lookup(me, users)
        return json_response({"presence": found})

    async def block_user(request: Request) -> Response:
        me = await api.user(request)
        if request.method == "POST":
            await api.conversations.block(me, request.path_params["user_id"])
        else:
            await api.conversations.unblock(me, request.path_params["user_id"])
        return json_response(Done(ok=True))

    async def list_blocks(request: Request) -> Response:
        me = await api.user(request)
        return json_response(BlockList(await api.conversations.blocked(me)))

    block = "/api/v1/blocks/{user_id}"
    return [
        Operation(
            "GET",
            "/api/v1/presence",
            "Online status and last seen of users you share a conversation with",
            get_presence,
            {200: PresenceList},
            query=[Query("user", "A user id; repeat for several", "string", True)],
            errors=(422,),
        ),
        Operation(
            "POST", block, "Block a user", block_user, {200: Done}, errors=(422,), tag="people"
        ),
        Operation(
            "DELETE", block, "Unblock a user", block_user, {200: Done}, errors=(422,), tag="people"
        ),
        Operation(
            "GET",
            "/api/v1/blocks",
            "Users you have blocked",
            list_blocks,
            {200: BlockList},
            tag="people",
        ),
    ]
