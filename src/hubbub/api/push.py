"""REST: the caller's push devices, per conversation notifications, do-not-disturb."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from hubbub.api.access import USER, User
from hubbub.api.http import json_response, read_json
from hubbub.api.openapi import Operation
from hubbub.api.schema import Done
from hubbub.models import Device, DoNotDisturb, Notifications

if TYPE_CHECKING:
    from hubbub.service.push import PushService

Instant = Annotated[datetime, Meta(tz=True, description="RFC 3339 with a time zone")]


class RegisterDevice(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    provider: Literal["expo", "webhook"]
    token: Annotated[str, Meta(min_length=1, max_length=4096)]
    platform: Literal["ios", "android", "web"]
    app_id: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


class DeviceBody(msgspec.Struct):
    device: Device


class DeviceList(msgspec.Struct):
    devices: list[Device]


class SetNotifications(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    level: Literal["all", "mentions", "none"]
    until: Instant | None = None


class NotificationsBody(msgspec.Struct):
    notifications: Notifications


class SetDoNotDisturb(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    until: Instant | None


class DoNotDisturbBody(msgspec.Struct):
    do_not_disturb: DoNotDisturb


def push_operations(push: PushService) -> list[Operation[Any]]:
    async def register_device(request: Request, user: User) -> Response:
        body = await read_json(request, RegisterDevice)
        device = await push.register(user.id, body.provider, body.token, body.platform, body.app_id)
        return json_response(DeviceBody(device))

    async def list_devices(request: Request, user: User) -> Response:
        return json_response(DeviceList(await push.devices(user.id)))

    async def delete_device(request: Request, user: User) -> Response:
        await push.forget(user.id, request.path_params["device_id"])
        return json_response(Done(ok=True))

    async def get_notifications(request: Request, user: User) -> Response:
        cid = request.path_params["conversation_id"]
        return json_response(NotificationsBody(await push.notifications(user.id, cid)))

    async def set_notifications(request: Request, user: User) -> Response:
        body = await read_json(request, SetNotifications)
        cid = request.path_params["conversation_id"]
        found = await push.set_notifications(user.id, cid, body.level, body.until)
        return json_response(NotificationsBody(found))

    async def get_do_not_disturb(request: Request, user: User) -> Response:
        return json_response(DoNotDisturbBody(await push.dnd(user.id)))

    async def set_do_not_disturb(request: Request, user: User) -> Response:
        body = await read_json(request, SetDoNotDisturb)
        return json_response(DoNotDisturbBody(await push.set_dnd(user.id, body.until)))

    devices = "/api/v1/push/devices"
    notifications = "/api/v1/conversations/{conversation_id}/notifications"
    dnd = "/api/v1/push/do-not-disturb"
    return [
        Operation(
            "POST",
            devices,
            "Register a device for pushes (again: updates it; a token moves to its latest user)",
            register_device,
            {200: DeviceBody},
            body=RegisterDevice,
            errors=(413, 422),
            tag="push",
            auth=USER,
        ),
        Operation(
            "GET", devices, "Your devices", list_devices, {200: DeviceList}, tag="push", auth=USER
        ),
        Operation(
            "DELETE",
            devices + "/{device_id}",
            "Forget one of your devices",
            delete_device,
            {200: Done},
            errors=(404,),
            tag="push",
            auth=USER,
        ),
        Operation(
            "GET",
            notifications,
            "What you are pushed of a conversation",
            get_notifications,
            {200: NotificationsBody},
            errors=(403, 404),
            tag="push",
            auth=USER,
        ),
        Operation(
            "PUT",
            notifications,
            "Be pushed of all messages, mentions and replies only, or none (until a time)",
            set_notifications,
            {200: NotificationsBody},
            body=SetNotifications,
            errors=(403, 404, 413, 422),
            tag="push",
            auth=USER,
        ),
        Operation(
            "GET",
            dnd,
            "Your do-not-disturb",
            get_do_not_disturb,
            {200: DoNotDisturbBody},
            tag="push",
            auth=USER,
        ),
        Operation(
            "PUT",
            dnd,
            "No pushes at all until a time (null: pushes again)",
            set_do_not_disturb,
            {200: DoNotDisturbBody},
            body=SetDoNotDisturb,
            errors=(413, 422),
            tag="push",
            auth=USER,
        ),
    ]
