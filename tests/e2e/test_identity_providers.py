"""Tokens of identity providers: keys from a JWKS URL that rotate, audience, issuer, claims.

The key set is served by a real HTTP server on 127.0.0.1 (a thread of this
process) that counts its fetches and is rotated by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hubbub.auth import TokenVerifier
from hubbub.clock import ManualClock
from hubbub.config import Settings
from hubbub.errors import Unauthorized, Unavailable
from hubbub.keys import MAX_AGE, REFETCH_INTERVAL
from tests.conftest import serve_in_process
from tests.support import Client, ServerProcess, SseClient, free_port

PROVIDER: dict[str, Any] = {"jwt_secret": None, "jwt_algorithms": ("RS256", "ES256")}
ISSUER = "https://tenant.example.com/"
AUDIENCE = "https://chat.example.com"


class SigningKey:
    """A provider's key pair: signs tokens, and is published as a JWK."""

    def __init__(self, kid: str | None, kind: str = "rsa") -> None:
        self.kid = kid
        self.alg = "RS256" if kind == "rsa" else "ES256"
        if kind == "rsa":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk["use"] = "sig"
        if kid is not None:
            self.jwk["kid"] = kid

    def token(self, user: str = "ann", *, kid: str | None = "own", **claims: Any) -> str:
        """Signed by this key; its header names ``kid`` (this key's own by default)."""
        body = {"sub": user, "exp": int(time.time()) + 600, **claims}
        named = self.kid if kid == "own" else kid
        headers = {"kid": named} if named is not None else {}
        return jwt.encode(body, self.private, self.alg, headers=headers)


class JwksServer:
    """A JWKS URL: serves ``keys`` (or fails with ``status``), counting the fetches."""

    def __init__(self) -> None:
        self.keys: list[Any] = []
        self.status = 200
        self.body: bytes | None = None  # served instead of the key set
        self.delay = 0.0
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                time.sleep(outer.delay)
                body = outer.body or json.dumps({"keys": outer.keys}).encode()
                # A slow key set's fetcher may have given up (its timeout).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(outer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"

    def publish(self, *keys: SigningKey) -> None:
        self.keys = [k.jwk for k in keys]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    served = JwksServer()
    yield served
    served.stop()


def verifier_of(url: str, clock: ManualClock, **settings: Any) -> TokenVerifier:
    values: dict[str, Any] = {"jwks_url": url, "jwt_algorithms": ("RS256", "ES256"), **settings}
    return TokenVerifier(Settings(**values), clock)


async def refused(verifier: TokenVerifier, token: str, error: type[Exception]) -> str:
    with pytest.raises(error) as caught:
        await verifier.verify(token)
    return str(caught.value)


# The key set on its own ------------------------------------------------------


async def test_rotated_keys_are_fetched_at_most_once_per_interval(jwks: JwksServer) -> None:
    clock = ManualClock()
    old, new = SigningKey("2026-a"), SigningKey("2026-b", "ec")
    jwks.publish(old)
    verifier = verifier_of(jwks.url, clock)
    try:
        assert (await verifier.verify(old.token("ann"))).user_id == "ann"
        assert (await verifier.verify(old.token("bob"))).user_id == "bob"
        assert verifier.check(old.token("cy")) is not None  # decided at once, no fetch
        assert jwks.fetches == 1

        jwks.publish(new)  # the provider rotates: the old key is gone, a new one is there
        clock.advance(REFETCH_INTERVAL - 1)
        assert "2026-b" in await refused(verifier, new.token(), Unauthorized)
        assert jwks.fetches == 1  # too soon after the last fetch
        clock.advance(1)
        assert verifier.check(new.token()) is None  # the set is to be fetched first
        assert (await verifier.verify(new.token("dee"))).user_id == "dee"
        assert jwks.fetches == 2
        await refused(verifier, old.token(), Unauthorized)  # dropped with the set

        # Unknown kids, many at once and again and again: no more fetches than allowed.
        for _ in range(3):
            clock.advance(REFETCH_INTERVAL / 3)
            tokens = [new.token(kid=f"nope-{n}") for n in range(20)]
            found = await asyncio.gather(
                *(verifier.verify(t) for t in tokens), return_exceptions=True
            )
            assert all(isinstance(f, Unauthorized) for f in found)
        assert jwks.fetches == 3  # one when the interval had passed, shared by all twenty
        assert (await verifier.verify(new.token("eve"))).user_id == "eve"
        assert jwks.fetches == 3
    finally:
        await verifier.close()


async def test_a_token_without_kid_is_tried_against_the_keys_of_its_algorithm(
    jwks: JwksServer,
) -> None:
    clock = ManualClock()
    only = SigningKey(None)
    jwks.publish(only)
    verifier = verifier_of(jwks.url, clock)
    try:
        assert (await verifier.verify(only.token("ann"))).user_id == "ann"
        two, ec_key = SigningKey("b"), SigningKey("c", "ec")
        jwks.publish(SigningKey("a"), two, ec_key)
        clock.advance(REFETCH_INTERVAL)
        assert (await verifier.verify(two.token("bob", kid=None))).user_id == "bob"
        assert (await verifier.verify(ec_key.token("cy", kid=None))).user_id == "cy"
        await refused(verifier, SigningKey(None).token(), Unauthorized)  # none of them signed it
        # A kid the set holds, with a signature of another key.
        await refused(verifier, SigningKey(None).token(kid="b"), Unauthorized)
        # A kid the set holds, for another algorithm than its key's.
        message = await refused(verifier, ec_key.token(kid="b"), Unauthorized)
        assert "not for ES256" in message
    finally:
        await verifier.close()


async def test_keys_that_cannot_sign_or_verify_are_left_out(jwks: JwksServer) -> None:
    clock = ManualClock()
    good, for_encryption, restricted = SigningKey("good"), SigningKey("enc"), SigningKey("ps")
    for_encryption.jwk["use"] = "enc"
    restricted.jwk["alg"] = "PS256"
    jwks.publish(good, for_encryption, restricted)
    jwks.keys += [
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
        {"kty": "RSA", "kid": "broken", "n": "??", "e": "AQAB"},
        {"kty": "EC", "kid": 5},
        "not a key",
    ]
    verifier = verifier_of(jwks.url, clock, jwt_algorithms=("RS256", "PS256", "HS256"))
    try:
        assert (await verifier.verify(good.token())).user_id == "ann"
        await refused(verifier, for_encryption.token(), Unauthorized)
        await refused(verifier, restricted.token(), Unauthorized)  # RS256, the key says PS256
        claims = {"sub": "ps", "exp": time.time() + 60}
        for headers in ({"kid": "ps"}, {}):
            ps = jwt.encode(claims, restricted.private, "PS256", headers=headers)
            assert (await verifier.verify(ps)).user_id == "ps"
        # HS256 signed with a symmetric key of the set (or anything else): no secret, refused.
        sym = jwt.encode({"sub": "x", "exp": time.time() + 60}, "s" * 32, "HS256")
        await refused(verifier, sym, Unauthorized)
        assert jwks.fetches == 1
    finally:
        await verifier.close()


@pytest.mark.parametrize("failure", ["status", "not json", "no keys", "slow", "refused"])
async def test_a_key_set_that_cannot_be_fetched_is_unavailable_then_recovers(
    jwks: JwksServer, failure: str
) -> None:
    clock = ManualClock()
    key = SigningKey("k1")
    jwks.publish(key)
    url = jwks.url
    if failure == "status":
        jwks.status = 500
    elif failure == "not json":
        jwks.body = b"<html>oops</html>"
    elif failure == "no keys":
        jwks.body = b'{"keys": "none"}'
    elif failure == "slow":
        jwks.delay = 1.0
    else:
        url = f"http://127.0.0.1:{free_port()}/jwks.json"
    verifier = verifier_of(url, clock)
    assert verifier.jwks is not None
    verifier.jwks.timeout = 0.3
    try:
        assert "could not be fetched" in await refused(verifier, key.token(), Unavailable)
        await refused(verifier, key.token(), Unavailable)  # not fetched again this soon
        jwks.status, jwks.body, jwks.delay = 200, None, 0.0
        verifier.jwks.url = jwks.url
        fetches = jwks.fetches
        clock.advance(REFETCH_INTERVAL)
        assert (await verifier.verify(key.token())).user_id == "ann"
        assert jwks.fetches == fetches + 1

        # Later failures keep the keys held: only a kid the set lacks is unavailable.
        jwks.status = 503
        clock.advance(REFETCH_INTERVAL)
        await refused(verifier, key.token(kid="k2"), Unavailable)
        assert (await verifier.verify(key.token())).user_id == "ann"
    finally:
        await verifier.close()


async def test_an_old_set_is_fetched_again_in_the_background(jwks: JwksServer) -> None:
    clock = ManualClock()
    first, second = SigningKey("first"), SigningKey("second")
    jwks.publish(first, second)
    verifier = verifier_of(jwks.url, clock)
    try:
        assert (await verifier.verify(first.token())).user_id == "ann"
        jwks.publish(second)  # "first" is revoked
        clock.advance(MAX_AGE)
        # The set held still decides at once, and is fetched again meanwhile.
        assert verifier.check(first.token()) is not None
        for _ in range(100):
            if jwks.fetches == 2 and verifier.jwks is not None and not verifier.jwks.fetching:
                break
            await asyncio.sleep(0.02)
        assert jwks.fetches == 2
        await refused(verifier, first.token(), Unauthorized)
        assert verifier.check(second.token()) is not None
    finally:
        await verifier.close()


# A real server ---------------------------------------------------------------


async def test_a_server_takes_provider_tokens_on_rest_websocket_and_stream(
    jwks: JwksServer, fresh_server: ServerProcess
) -> None:
    key = SigningKey(None)
    jwks.publish(key)
    del fresh_server.env["HUBBUB_JWT_SECRET"]
    fresh_server.env.update(
        {
            "HUBBUB_JWKS_URL": jwks.url,
            "HUBBUB_JWT_AUDIENCE": AUDIENCE,
            "HUBBUB_JWT_ISSUER": ISSUER,
            "HUBBUB_JWT_NAME_CLAIM": "nickname",
        }
    )
    fresh_server.start()
    claims: dict[str, Any] = {
        "aud": [AUDIENCE, "https://tenant.example.com/userinfo"],
        "iss": ISSUER,
    }
    good = key.token("auth0|ann", nickname="Ann", **claims)
    with_kid = key.token("auth0|ann", kid="whatever", **claims)
    r = httpx.get(
        fresh_server.url + "/api/v1/conversations", headers={"Authorization": f"Bearer {good}"}
    )
    assert r.status_code == 200, r.text
    c = await Client.connect(fresh_server, "auth0|ann", tok=good)
    assert c.hello["user_id"] == "auth0|ann"
    assert (await c.request({"type": "ping"}))["type"] == "ack"
    s = await SseClient.connect(fresh_server.url, "auth0|ann", tok=good)
    assert (await s.request({"type": "ping"}))["type"] == "ack"

    for bad in (
        key.token("ann", aud="https://other.example.com", iss=ISSUER),
        key.token("ann", aud=AUDIENCE, iss="https://evil.example.com/"),
        key.token("ann", aud=AUDIENCE),
        SigningKey(None).token("ann", **claims),
        with_kid,  # a kid the set does not hold
    ):
        r = httpx.get(
            fresh_server.url + "/api/v1/conversations", headers={"Authorization": f"Bearer {bad}"}
        )
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
        with pytest.raises(websockets.InvalidStatus) as refusal:
            await websockets.connect(f"{fresh_server.ws_url}?token={bad}")
        assert refusal.value.response.status_code == 401
    await c.close()
    await s.close()


async def test_a_server_follows_a_rotation_without_restart(
    jwks: JwksServer, tmp_path: Path
) -> None:
    old, new = SigningKey("old"), SigningKey("new", "ec")
    jwks.publish(old)
    jwks.delay = 0.3  # the first handshakes wait for the fetch begun at start
    async with serve_in_process(tmp_path, **PROVIDER, jwks_url=jwks.url) as served:
        first = await Client.connect_url(served.ws_url, "ann", tok=old.token("ann"))
        assert first.hello["user_id"] == "ann"
        assert jwks.fetches == 1
        jwks.delay = 0.0

        jwks.publish(new)
        served.clock.advance(REFETCH_INTERVAL)
        # The handshake waits for the new set, as does the request.
        second = await Client.connect_url(served.ws_url, "bob", tok=new.token("bob"))
        assert second.hello["user_id"] == "bob"
        async with httpx.AsyncClient(base_url=served.url) as http:
            r = await http.get(
                "/api/v1/conversations", headers={"Authorization": f"Bearer {new.token('cy')}"}
            )
            assert r.status_code == 200
            # An unknown kid: refused at once, the set not fetched again this soon.
            for n in range(5):
                headers = {"Authorization": f"Bearer {new.token(kid=f'x{n}')}"}
                assert (await http.get("/api/v1/conversations", headers=headers)).status_code == 401
                with pytest.raises(websockets.InvalidStatus) as refusal:
                    await websockets.connect(f"{served.ws_url}?token={new.token(kid=f'y{n}')}")
                assert refusal.value.response.status_code == 401
        assert jwks.fetches == 2
        # The connection opened with the rotated-out key lives on until its token expires.
        assert (await first.request({"type": "ping"}))["type"] == "ack"

        # The provider is down and the token names a key not fetched yet: 503, not 401.
        jwks.status = 503
        served.clock.advance(REFETCH_INTERVAL)
        fresh = SigningKey("fresh")
        with pytest.raises(websockets.InvalidStatus) as refusal:
            await websockets.connect(f"{served.ws_url}?token={fresh.token()}")
        response = refusal.value.response
        assert response.status_code == 503
        assert json.loads(response.body)["error"]["code"] == "unavailable"
        served.clock.advance(REFETCH_INTERVAL)
        async with httpx.AsyncClient(base_url=served.url) as http:
            headers = {"Authorization": f"Bearer {fresh.token()}"}
            r = await http.get("/api/v1/conversations", headers=headers)
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        await first.close()
        await second.close()


async def test_a_client_that_leaves_during_the_fetch_costs_nothing(
    jwks: JwksServer, tmp_path: Path
) -> None:
    key = SigningKey("k")
    jwks.publish(key)
    jwks.delay = 0.5
    async with serve_in_process(tmp_path, **PROVIDER, jwks_url=jwks.url) as served:
        with pytest.raises(TimeoutError):
            await websockets.connect(f"{served.ws_url}?token={key.token()}", open_timeout=0.1)
        await asyncio.sleep(0.6)
        c = await Client.connect_url(served.ws_url, "ann", tok=key.token())
        assert (await c.request({"type": "ping"}))["type"] == "ack"
        assert len(served.app.gateway.hub) == 1
        await c.close()
