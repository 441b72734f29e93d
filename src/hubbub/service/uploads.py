"""Attachments: files stored under the data directory, served to who may see them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from hubbub.clock import Clock, now_ms
from hubbub.errors import Invalid, TooLarge, Unavailable
from hubbub.ids import new_id
from hubbub.models import Upload
from hubbub.store.base import Store

MAX_NAME = 255


class UploadService:
    def __init__(
        self, store: Store, clock: Clock, directory: Path, max_bytes: int, types: tuple[str, ...]
    ) -> None:
        self.store = store
        self.clock = clock
        self.directory = directory
        self.max_bytes = max_bytes
        self.types = types

    def path(self, upload_id: str) -> Path:
        return self.directory / upload_id

    async def save(
        self, owner: str, name: str, content_type: str, chunks: AsyncIterator[bytes]
    ) -> Upload:
        """Stream a file to disk within the limits, then record it."""
        content_type = content_type.split(";")[0].strip().lower()
        if content_type not in self.types:
            raise Invalid(f"content type {content_type!r} is not accepted")
        name = (os.path.basename(name.replace("\\", "/")) or "file")[:MAX_NAME]
        upload_id = new_id("u")
        target = self.path(upload_id)
        partial = target.with_suffix(".part")
        size = 0
        try:
            with _disk():
                self.directory.mkdir(parents=True, exist_ok=True)
                out = open(partial, "wb")  # noqa: SIM115 (closed below, errors mapped)
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise TooLarge(f"a file is at most {self.max_bytes} bytes")
                    with _disk():
                        out.write(chunk)
            finally:
                with _disk():
                    out.close()
            if size == 0:
                raise Invalid("the file is empty")
            with _disk():
                partial.rename(target)
            return await self.store.create_upload(
                upload_id, owner, name, content_type, size, now_ms(self.clock)
            )
        except BaseException:
            for leftover in (partial, target):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            raise

    async def get(self, user: str, upload_id: str) -> tuple[Upload, Path]:
        upload = await self.store.get_upload(user, upload_id)
        return upload, self.path(upload.id)


@contextlib.contextmanager
def _disk() -> Iterator[None]:
    """A file system error (a full disk, a read-only or missing directory): retry later."""
    try:
        yield
    except OSError as exc:
        raise Unavailable(f"cannot store the file now: {exc.strerror or exc}") from None
