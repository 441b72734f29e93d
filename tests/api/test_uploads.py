"""Uploads and downloads over REST, in process."""

from __future__ import annotations

import httpx

from tests.api.rest import bearer, error, group, ok


async def test_upload_attach_and_download(rest: httpx.AsyncClient) -> None:
    files = {"file": ("note.txt", b"hello", "text/plain")}
    made = ok(await rest.post("/api/v1/uploads", headers=bearer("ann"), files=files), 201)
    upload = made["upload"]
    assert made["url"] == f"/api/v1/uploads/{upload['id']}"
    assert (upload["name"], upload["size"]) == ("note.txt", 5)
    mine = await rest.get(made["url"], headers=bearer("ann"))
    assert mine.status_code == 200 and mine.content == b"hello"
    assert mine.headers["content-type"].startswith("text/plain")
    assert mine.headers["x-content-type-options"] == "nosniff"
    assert mine.headers["cache-control"] == "private"
    assert "note.txt" in mine.headers["content-disposition"]
    assert error(await rest.get(made["url"], headers=bearer("bob"))) == (403, "forbidden")

    cid = await group(rest, "ann", "bob")
    body = {"body": "see", "client_msg_id": "f1", "kind": "file", "attachments": [upload["id"]]}
    r = await rest.post(f"/api/v1/conversations/{cid}/messages", headers=bearer("ann"), json=body)
    assert r.status_code == 201, r.text
    shared = await rest.get(made["url"], headers=bearer("bob"))
    assert shared.status_code == 200 and shared.content == b"hello"


async def test_refused_uploads(rest: httpx.AsyncClient) -> None:
    exe = {"file": ("x.exe", b"MZ", "application/x-msdownload")}
    r = await rest.post("/api/v1/uploads", headers=bearer("ann"), files=exe)
    assert error(r) == (422, "invalid")
    r = await rest.post("/api/v1/uploads", headers=bearer("ann"), data={"x": "1"})
    assert error(r) == (422, "invalid")
    no_boundary = {**bearer("ann"), "Content-Type": "multipart/form-data"}
    r = await rest.post("/api/v1/uploads", headers=no_boundary, content=b"")
    assert error(r) == (422, "invalid")
    files = {"file": ("note.txt", b"hello", "text/plain")}
    assert error(await rest.post("/api/v1/uploads", files=files)) == (401, "unauthorized")
    assert error(await rest.get("/api/v1/uploads/u_nothing", headers=bearer("ann")))[0] == 404
    assert error(await rest.get("/api/v1/uploads/u_nothing")) == (401, "unauthorized")
