"""REST: file uploads (multipart) and downloads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from hubbub.api.access import USER, User
from hubbub.api.http import check_text, json_response
from hubbub.api.openapi import Operation
from hubbub.api.schema import UploadBody
from hubbub.errors import Invalid, TooLarge

if TYPE_CHECKING:
    from hubbub.service.uploads import UploadService

CHUNK = 64 * 1024
FORM_OVERHEAD = 64 * 1024


@asynccontextmanager
async def multipart(request: Request) -> AsyncIterator[FormData]:
    """The request's form: one file, a few fields; a malformed one is ``invalid`` (422)."""
    try:
        form = await request.form(max_files=1, max_fields=4)
    except HTTPException as exc:  # Starlette's bare 400 for a malformed multipart body
        raise Invalid(f"malformed multipart/form-data: {exc.detail}") from None
    try:
        yield form
    finally:
        await form.close()


def upload_operations(service: UploadService) -> list[Operation[Any]]:
    async def upload_file(request: Request, user: User) -> Response:
        me = user.id
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > service.max_bytes + FORM_OVERHEAD:
            raise TooLarge(f"a file is at most {service.max_bytes} bytes")
        async with multipart(request) as form:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise Invalid("send the file as multipart/form-data field 'file'")

            async def chunks() -> AsyncIterator[bytes]:
                while chunk := await file.read(CHUNK):
                    yield chunk

            name = check_text(file.filename or "file", "the file name")
            kind = check_text(file.content_type or "", "the content type")
            upload = await service.save(me, name, kind, chunks())
        return json_response(UploadBody(upload=upload, url=f"/api/v1/uploads/{upload.id}"), 201)

    async def download_file(request: Request, user: User) -> Response:
        me = user.id
        upload, path = await service.get(me, request.path_params["upload_id"])
        return FileResponse(
            path,
            media_type=upload.content_type,
            filename=upload.name,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private"},
        )

    return [
        Operation(
            "POST",
            "/api/v1/uploads",
            "Upload a file (multipart/form-data, field 'file') to attach to a message",
            upload_file,
            {201: UploadBody},
            errors=(413, 422),
            tag="files",
            auth=USER,
            form={
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": f"At most {service.max_bytes} bytes (more: 413), "
                            "of a type in encoding.file.contentType (others: 422)",
                        }
                    },
                    "required": ["file"],
                },
                "encoding": {"file": {"contentType": ", ".join(service.types)}},
            },
        ),
        Operation(
            "GET",
            "/api/v1/uploads/{upload_id}",
            "Download a file: its uploader, or members of a conversation it was sent to",
            download_file,
            {200: None},
            errors=(403, 404),
            tag="files",
            auth=USER,
        ),
    ]
