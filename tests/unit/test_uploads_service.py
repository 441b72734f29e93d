"""UploadService: files streamed to disk within the limits, then recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.clock import iso_ms, now_ms
from hubbub.errors import Forbidden, Invalid, NotFound, TooLarge
from hubbub.service.uploads import MAX_NAME
from tests.unit.service_rig import UPLOAD_MAX, Rig, chunks, running


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(tmp_path) as built:
        yield built


def leftovers(rig: Rig) -> list[str]:
    directory = rig.uploads.directory
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def test_a_file_is_streamed_to_disk_and_recorded(rig: Rig) -> None:
    rig.clock.advance(10)
    upload = await rig.uploads.save("ann", "cat.png", "image/png", chunks(b"ab", b"", b"cd"))
    assert (upload.owner_id, upload.name, upload.content_type, upload.size) == (
        "ann",
        "cat.png",
        "image/png",
        4,
    )
    assert upload.created_at == iso_ms(now_ms(rig.clock))
    assert upload.id.startswith("u_")
    found, path = await rig.uploads.get("ann", upload.id)
    assert found == upload and path == rig.uploads.path(upload.id)
    assert path.read_bytes() == b"abcd"
    assert leftovers(rig) == [upload.id]  # no .part file left behind


async def test_a_file_of_exactly_the_limit_is_accepted(rig: Rig) -> None:
    upload = await rig.uploads.save("ann", "f.txt", "text/plain", chunks(b"x" * UPLOAD_MAX))
    assert upload.size == UPLOAD_MAX


@pytest.mark.parametrize(
    ("declared", "stored"),
    [
        ("Image/PNG", "image/png"),
        ("text/plain; charset=utf-8", "text/plain"),
        (" image/gif ", "image/gif"),
    ],
)
async def test_content_types_are_normalised(rig: Rig, declared: str, stored: str) -> None:
    upload = await rig.uploads.save("ann", "f", declared, chunks(b"1"))
    assert upload.content_type == stored


@pytest.mark.parametrize("ctype", ["", "text/html", "application/x-sh", "image/svg+xml"])
async def test_other_content_types_are_refused(rig: Rig, ctype: str) -> None:
    with pytest.raises(Invalid) as caught:
        await rig.uploads.save("ann", "f", ctype, chunks(b"1"))
    assert type(caught.value) is Invalid
    assert leftovers(rig) == []


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ann\\photo.png", "photo.png"),
        ("dir/", "file"),
        ("", "file"),
        ("n" * (MAX_NAME + 20), "n" * MAX_NAME),
    ],
)
async def test_names_lose_their_directories_and_are_bounded(rig: Rig, name: str, kept: str) -> None:
    upload = await rig.uploads.save("ann", name, "image/png", chunks(b"1"))
    assert upload.name == kept
    assert leftovers(rig) == [upload.id]


async def test_a_file_over_the_limit_is_refused_and_removed(rig: Rig) -> None:
    with pytest.raises(TooLarge):
        await rig.uploads.save("ann", "big", "image/png", chunks(b"x" * UPLOAD_MAX, b"y"))
    assert leftovers(rig) == []


async def test_an_empty_file_is_refused_and_removed(rig: Rig) -> None:
    with pytest.raises(Invalid) as caught:
        await rig.uploads.save("ann", "empty", "image/png", chunks())
    assert type(caught.value) is Invalid
    assert leftovers(rig) == []


async def test_a_failing_stream_leaves_nothing(rig: Rig) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"part"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await rig.uploads.save("ann", "f", "image/png", broken())
    assert leftovers(rig) == []


async def test_only_the_owner_gets_an_unshared_upload(rig: Rig) -> None:
    upload = await rig.upload("ann")
    with pytest.raises(Forbidden):
        await rig.uploads.get("bob", upload.id)
    with pytest.raises(NotFound):
        await rig.uploads.get("ann", "u_missing")
