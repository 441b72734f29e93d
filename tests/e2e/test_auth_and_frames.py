"""Refusals: bad tokens, bad frames, bad requests. The connection survives."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hubbub.clock import iso_ms
from tests.conftest import InProcess
from tests.support import (
    SECRET,
    Client,
    ServerProcess,
    SseClient,
    auth,
    forged,
    new_id,
    open_direct,
    raw_token,
    token,
)

BAD_TOKENS = {
    "missing": None,
    "garbage": "not-a-jwt",
    "wrong secret": jwt.encode({"sub": "u", "exp": time.time() + 60}, "other-secret" * 3, "HS256"),
    "expired": token("u", ttl=-120),
    "no exp": jwt.encode({"sub": "u"}, SECRET, "HS256"),
    "empty sub": jwt.encode({"sub": "", "exp": time.time() + 60}, SECRET, "HS256"),
    # PyJWT takes "" as no key for "none" (its stubs do not allow None).
    "alg none": jwt.encode({"sub": "u", "exp": time.time() + 60}, "", "none"),
    "reserved id": token("system"),
    "exp of 10^400": raw_token('{"sub":"u","exp":1' + "0" * 400 + "}"),
    "exp of 1e400": raw_token('{"sub":"u","exp":1e400}'),
    "exp NaN": raw_token('{"sub":"u","exp":NaN}'),
    "exp a string": raw_token(f'{{"sub":"u","exp":"{int(time.time()) + 86_400}"}}'),
    "iat a string": raw_token(f'{{"sub":"u","exp":{int(time.time()) + 86_400},"iat":"0"}}'),
    "nbf of 1e400": raw_token(f'{{"sub":"u","exp":{int(time.time()) + 86_400},"nbf":1e400}}'),
    "NUL in sub": raw_token(f'{{"sub":"u\\u0000x","exp":{int(time.time()) + 86_400}}}'),
    "NUL in name": raw_token(f'{{"sub":"u","name":"\\u0000","exp":{int(time.time()) + 86_400}}}'),
}


@pytest.mark.parametrize("name", BAD_TOKENS)
async def test_bad_token_is_refused_on_handshake_and_rest(server: ServerProcess, name: str) -> None:
    bad = BAD_TOKENS[name]
    url = server.ws_url + (f"?token={bad}" if bad else "")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "unauthorized"

    headers = {"Authorization": f"Bearer {bad}"} if bad else {}
    r = httpx.get(f"{server.url}/api/v1/conversations", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


async def test_token_in_authorization_header(server: ServerProcess) -> None:
    ws = await websockets.connect(server.ws_url, additional_headers=auth("hdr"))
    hello = json.loads(await ws.recv())
    assert hello["user_id"] == "hdr"
    await ws.close()


async def test_unknown_websocket_path_is_404(server: ServerProcess) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"ws://127.0.0.1:{server.port}/elsewhere?token={token('u')}")
    assert refused.value.response.status_code == 404


async def test_bad_frames_get_error_frames_and_connection_survives(server: ServerProcess) -> None:
    cid = open_direct(server, "fa", "fb")
    c = await Client.connect(server, "fa")
    limit = c.hello["limits"]["max_frame_bytes"]
    max_body = c.hello["limits"]["max_body_chars"]
    cases = [
        ("{not json", None, "invalid"),
        ("[1, 2]", None, "invalid"),
        (json.dumps({"id": 1}), 1, "invalid"),
        (json.dumps({"type": "warp", "id": 2}), 2, "unknown_type"),
        (json.dumps({"type": "message.send", "id": 3, "conversation_id": cid}), 3, "invalid"),
        (
            json.dumps(
                {
                    "type": "message.send",
                    "id": 4,
                    "conversation_id": cid,
                    "body": 5,
                    "client_msg_id": "x",
                }
            ),
            4,
            "invalid",
        ),
        (
            json.dumps(
                {
                    "type": "message.send",
                    "id": 5,
                    "conversation_id": cid,
                    "body": "  ",
                    "client_msg_id": "x",
                }
            ),
            5,
            "invalid",
        ),
        (
            json.dumps(
                {
                    "type": "message.send",
                    "id": 6,
                    "conversation_id": cid,
                    "body": "b" * (max_body + 1),
                    "client_msg_id": "x",
                }
            ),
            6,
            "too_large",
        ),
        (
            json.dumps(
                {
                    "type": "message.send",
                    "id": 7,
                    "conversation_id": cid,
                    "body": "hi",
                    "client_msg_id": "",
                }
            ),
            7,
            "invalid",
        ),
        (
            json.dumps(
                {
                    "type": "message.send",
                    "id": 8,
                    "conversation_id": "c_missing",
                    "body": "hi",
                    "client_msg_id": "x",
                }
            ),
            8,
            "not_found",
        ),
        (json.dumps({"type": "resume", "id": 9, "cursors": {cid: -1}}), 9, "invalid"),
        ("x" * (limit + 1), None, "too_large"),
        # Too large, still JSON: the error names the request it refuses.
        (json.dumps({"type": "message.send", "id": 11, "body": "b" * limit}), 11, "too_large"),
        (json.dumps({"id": "s" * 200, "type": "ping", "pad": "p" * limit}), None, "too_large"),
        (json.dumps({"type": "ping", "id": {"nested": True}}), None, "invalid"),
    ]
    for raw, rid, code in cases:
        await c.ws.send(raw)
        reply = await c.recv()
        assert reply["type"] == "error", raw[:80]
        assert (reply["id"], reply["code"]) == (rid, code), (raw[:80], reply)
        assert reply["message"]
    await c.ws.send(b"\x00binary")
    assert (await c.recv())["code"] == "invalid"
    # A frame between the soft limit and the hard ceiling, in fragments.
    await c.ws.send(["y" * limit, "y" * limit])
    assert (await c.recv())["code"] == "too_large"

    # Still open and working; nothing was stored by the refusals.
    sent = await c.send_message(cid, "after all that")
    assert sent["seq"] == 1
    history = httpx.get(
        f"{server.url}/api/v1/conversations/{cid}/messages", headers=auth("fb")
    ).json()
    assert [m["body"] for m in history["messages"]] == ["after all that"]
    await c.close()


async def test_frame_over_hard_ceiling_closes_with_1009(server: ServerProcess) -> None:
    c = await Client.connect(server, "big")
    ceiling = max(c.hello["limits"]["max_frame_bytes"] * 4, 1 << 20)
    # The server may refuse the frame before the client has finished writing
    # it, so the close can surface from send() as well as from recv().
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await c.ws.send("z" * (ceiling + 1))
        await c.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_rest_refuses_bad_bodies(server: ServerProcess, http: httpx.Client) -> None:
    h = auth("ra")
    conv = "/api/v1/conversations"
    cases = [
        ({"kind": "direct", "members": []}, 422),
        ({"kind": "direct", "members": ["ra"]}, 422),
        ({"kind": "direct", "members": ["x", "y"]}, 422),
        ({"kind": "group", "members": ["x"]}, 422),
        ({"kind": "group", "title": " ", "members": ["x"]}, 422),
        ({"kind": "group", "title": "t", "members": [""]}, 422),
        ({"kind": "channel", "members": ["x"]}, 422),
        ({"kind": "direct", "members": ["x"], "extra": 1}, 422),
    ]
    for body, status in cases:
        r = http.post(conv, headers=h, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["code"] == "invalid"
    r = http.post(conv, headers={**h, "Content-Type": "application/json"}, content=b"{oops")
    assert r.status_code == 422
    r = http.post(conv, headers=h, content=b"x" * (300 * 1024))
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    cid = open_direct(server, "ra", "rb")
    r = http.post(
        f"{conv}/{cid}/messages", headers=h, json={"body": "x" * 5000, "client_msg_id": new_id()}
    )
    assert r.status_code == 413
    assert http.delete(conv, headers=h).status_code == 405
    assert http.get("/ws").status_code == 426


async def test_public_key_tokens(fresh_server: ServerProcess) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    del fresh_server.env["HUBBUB_JWT_SECRET"]
    fresh_server.env["HUBBUB_JWT_PUBLIC_KEY"] = pem.decode()
    fresh_server.start()
    good = jwt.encode({"sub": "ecdsa", "exp": time.time() + 60}, key, "ES256")
    ws = await websockets.connect(f"{fresh_server.ws_url}?token={good}")
    assert json.loads(await ws.recv())["user_id"] == "ecdsa"
    await ws.close()
    # An HS256 token signed with the public key text must not pass.
    forged = jwt.encode({"sub": "x", "exp": time.time() + 60}, "k" * 40, "HS256")
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{fresh_server.ws_url}?token={forged}")


@pytest.mark.parametrize("family", ["rsa", "ec"])
async def test_a_header_naming_the_other_key_family_is_401_on_every_transport(
    fresh_server: ServerProcess, family: str
) -> None:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if family == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fresh_server.env["HUBBUB_JWT_PUBLIC_KEY"] = pem.decode()
    fresh_server.start()
    own, other = ("RS256", "ES256") if family == "rsa" else ("ES256", "RS256")
    good = jwt.encode({"sub": "pk", "exp": time.time() + 60}, key, own)
    for bad in (forged(other), forged("PS256"), forged("ES384"), forged("EdDSA"), forged(own)):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{fresh_server.ws_url}?token={bad}", open_timeout=5)
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body)["error"]["code"] == "unauthorized"
        headers = {"Authorization": f"Bearer {bad}"}
        for method, path in (("GET", "/api/v1/conversations"), ("GET", "/sse")):
            r = httpx.request(method, fresh_server.url + path, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
    c = await Client.connect(fresh_server, "pk", tok=good)  # the server is none the worse
    assert (await c.request({"type": "ping"}))["type"] == "ack"
    await c.close()


async def test_a_token_with_an_audience_is_taken_when_none_is_configured(
    server: ServerProcess,
) -> None:
    claims = {"sub": "aud", "exp": time.time() + 60, "aud": "https://api.example.com"}
    tok = jwt.encode(claims, SECRET, "HS256")
    r = httpx.get(server.url + "/api/v1/conversations", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200, r.text
    c = await Client.connect(server, "aud", tok=tok)
    assert c.hello["user_id"] == "aud"
    await c.close()


async def test_a_refused_frame_is_answered_after_the_commands_before_it(
    server: ServerProcess,
) -> None:
    cid = open_direct(server, "fo", "fp")
    c = await Client.connect(server, "fo")
    await c.request({"type": "ping"})
    for i in range(1, 6):  # sends under way in the database when the bad frame comes
        await c.send(
            {
                "type": "message.send",
                "id": i,
                "conversation_id": cid,
                "body": f"n{i}",
                "client_msg_id": new_id(),
            }
        )
    await c.ws.send("{not json")
    await c.send({"type": "ping", "id": "after"})
    replies: list[tuple[str, int | str | None]] = []
    while len(replies) < 7:
        frame = await c.recv()
        if frame["type"] in ("ack", "error"):
            replies.append((frame["type"], frame["id"]))
    assert replies == [("ack", i) for i in range(1, 6)] + [("error", None), ("ack", "after")]


@pytest.mark.parametrize("transport", ["websocket", "stream"])
async def test_token_refresh_extends_the_connection(in_process: InProcess, transport: str) -> None:
    clock, gateway = in_process.clock, in_process.app.gateway
    brief = token("rf", ttl=60, now=clock.now())
    c: Client | SseClient = (
        await Client.connect_url(in_process.ws_url, "rf", tok=brief)
        if transport == "websocket"
        else await SseClient.connect(in_process.url, "rf", tok=brief)
    )
    longer = token("rf", name="Ref", ttl=600, now=clock.now())
    ack = await c.request({"type": "token.refresh", "id": "t1", "token": longer})
    assert ack == {
        "type": "ack",
        "id": "t1",
        "expires_at": iso_ms(int(jwt.decode(longer, SECRET, ["HS256"])["exp"]) * 1000),
    }
    if isinstance(c, SseClient):
        c.token = longer  # its posts carry the current token too
    refusals = [
        (token("someone", ttl=6000, now=clock.now()), "forbidden"),
        ("not-a-jwt", "unauthorized"),
        (token("rf", ttl=-1, now=clock.now()), "unauthorized"),
        (raw_token('{"sub":"rf","exp":1e400}'), "unauthorized"),
        (None, "invalid"),
    ]
    for tok, code in refusals:
        frame: dict[str, Any] = {"type": "token.refresh"}
        if tok is not None:
            frame["token"] = tok
        reply = await c.request(frame)
        assert (reply["type"], reply["code"]) == ("error", code), reply
    clock.advance(120)  # past the first token's expiry
    gateway.sweep()
    assert (await c.request({"type": "ping"}))["type"] == "ack"
    clock.advance(600 - 120 + 1)  # past the refreshed one's: another user's never counted
    gateway.sweep()
    if isinstance(c, SseClient):
        end = await c.closed()
        assert (end.code, end.reason) == (4401, "token expired")
    else:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await c.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
