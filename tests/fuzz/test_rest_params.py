"""Hostile REST requests against one real server: no 5xx, documented error bodies only.

The operations and their parameters come from the server's own
``/openapi.json``: each request fills an operation's path parameters, query
parameters and JSON body with well-formed values (real ids), hostile ones, or
none, adds unknown ones, and sometimes sends a body that is not JSON at all or
no valid token. Every answer is below 500; every error is
``{"error": {"code", "message"}}`` with a status and code pair of rest.md,
"Errors"; the server logs no traceback and its memory stays bounded.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.hostile import (
    BAD_UTF8,
    MULTIPLIER,
    NASTY_TEXT,
    Obj,
    Ref,
    any_text,
    dumps,
    fuzz_settings,
    hostile,
    nest,
    rest_errors,
    url_text,
)
from tests.fuzz.world import assert_healthy, contexts, rss_bytes
from tests.support import ServerProcess, new_id

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
BATCH = 30
EXAMPLES = 100  # x BATCH: 3,000 requests a run (times HUBBUB_FUZZ_EXAMPLES)
REST_ERRORS = rest_errors()
MAX_URL = 60_000  # httpx sends none longer than 64 KiB; 16 KiB already answers 431
STREAMS = {("GET", "/sse")}  # answers a stream that does not end: not fuzzed here
ALL_IDS = ["cid", "quiet_cid", "foreign_cid", "mid", "mid2", "foreign_mid", "upload", "room"]
BAD_INTEGERS = [
    "-1",
    "",
    " 1",
    "1 ",
    "+1",
    "1.0",
    "1e3",
    "0x10",
    "\u0661",  # an Arabic-Indic digit: not ASCII
    "\uff11",  # a fullwidth digit
    str(2**53),
    str(2**63),
    str(2**64),
    "9" * 40,
    "NaN",
    "null",
    "%00",
]


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    path_params: tuple[str, ...]
    query: tuple[tuple[str, dict[str, Any]], ...]
    body: dict[str, Any] | None


@dataclass(frozen=True)
class Call:
    """A request before its context is known."""

    op: Op
    path_values: tuple[Any, ...]
    query: tuple[tuple[str, Any], ...]
    body: Any  # a value tree, raw bytes, or None for no body
    auth: str  # "token", "none", "garbage", "expired"


def operations(spec: dict[str, Any]) -> list[Op]:
    ops = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if (method.upper(), path) in STREAMS:
                continue
            params = operation.get("parameters", [])
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            ops.append(
                Op(
                    method.upper(),
                    path,
                    tuple(p["name"] for p in params if p["in"] == "path"),
                    tuple((p["name"], p["schema"]) for p in params if p["in"] == "query"),
                    resolve(spec, body["schema"]) if body else None,
                )
            )
    return ops


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: dict[str, Any] = spec
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return resolve(spec, found)


def well_formed(spec: dict[str, Any], name: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value that fits ``schema`` (and the real ids, for fields that name one)."""
    if name == "reply_to":
        return st.sampled_from([Ref("mid"), Ref("foreign_mid"), None])
    if name == "attachments":
        return st.lists(st.sampled_from([Ref("upload"), Ref("foreign_upload")]), max_size=11)
    if name == "members":
        return st.lists(st.sampled_from(["fz-peer", Ref("user"), "fz-new"]), max_size=3)
    schema = resolve(spec, schema)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([well_formed(spec, name, s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "string":
        low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
        return st.text(min_size=low, max_size=max(low, high))
    if kind == "integer":
        return st.integers(schema.get("minimum", 0), schema.get("maximum", 2**53 - 1))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(well_formed(spec, name, schema.get("items", {})), max_size=3)
    if kind == "object" and "properties" in schema:
        return body_of(spec, schema)
    return hostile


def body_of(spec: dict[str, Any], schema: dict[str, Any]) -> st.SearchStrategy[Obj]:
    """An object of the schema's properties, each well-formed, hostile or missing,
    with unknown fields and repeated keys now and then."""

    @st.composite
    def build(draw: st.DrawFn) -> Obj:
        pairs: list[tuple[str, Any]] = []
        for name, prop in schema.get("properties", {}).items():
            choice = draw(st.integers(0, 9))
            if choice == 9:
                continue
            value = hostile if choice == 8 else well_formed(spec, name, prop)
            pairs.append((name, draw(value)))
        if draw(st.integers(0, 4)) == 4:
            pairs.append((draw(any_text), draw(hostile)))
        if pairs and draw(st.integers(0, 9)) == 9:
            pairs.append((draw(st.sampled_from([k for k, _ in pairs])), draw(hostile)))
        return Obj(tuple(pairs))

    return build()


RAW_BODIES = st.one_of(
    st.sampled_from([b"", b"{", b"null", b"[]", b'"x"', b"NaN", b'{"a":1,}', *BAD_UTF8]),
    st.binary(max_size=64),
    st.builds(lambda n: ("[" * n + "]" * n).encode(), st.sampled_from([32, 33, 300, 5000])),
    st.builds(lambda n: b'{"title":"' + b"a" * n + b'"}', st.sampled_from([300_000])),
)


IDS_BY_PREFIX = {
    "/api/v1/conversations/": ["cid", "quiet_cid", "foreign_cid", "room"],
    "/api/v1/messages/": ["mid", "mid2", "foreign_mid"],
    "/api/v1/uploads/": ["upload", "foreign_upload"],
    "/api/v1/rooms/": ["room", "cid"],
}


def path_value(path: str, param: str) -> st.SearchStrategy[Any]:
    good: st.SearchStrategy[Any]
    names = next((v for k, v in IDS_BY_PREFIX.items() if path.startswith(k)), ALL_IDS)
    if param == "user_id":
        good = st.sampled_from([Ref("user"), "fz-peer", "system", "fz-new"])
    elif param == "emoji":
        good = st.sampled_from(["👍", "x", "x" * 33, "a b"])
    else:
        good = st.sampled_from([Ref(name) for name in names])
    return st.one_of(good, good, any_text, url_text, st.sampled_from(["..", ".", "%2F", "?"]))


def query_value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if schema.get("type") == "integer":
        low, high = schema.get("minimum", 0), schema.get("maximum", 2**53 - 1)
        good = st.integers(low, high).map(str)
        return st.one_of(good, st.sampled_from(BAD_INTEGERS), any_text)
    return st.one_of(
        st.text(max_size=30), st.sampled_from(NASTY_TEXT), url_text, st.sampled_from([Ref("cid")])
    )


def call_for(spec: dict[str, Any], op: Op) -> st.SearchStrategy[Call]:
    @st.composite
    def build(draw: st.DrawFn) -> Call:
        path_values = tuple(draw(path_value(op.path, p)) for p in op.path_params)
        query: list[tuple[str, Any]] = []
        for name, schema in op.query:
            for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):  # absent, once, repeated
                query.append((name, draw(query_value(schema))))
        if draw(st.integers(0, 4)) == 4:
            query.append((draw(st.sampled_from(["x", "limit", "id", "\x00", ""])), draw(any_text)))
        body: Any = None
        if op.body is not None or draw(st.integers(0, 4)) == 4:
            choice = draw(st.integers(0, 9))
            if choice == 9:
                body = draw(RAW_BODIES)
            elif choice == 8:
                body = draw(st.one_of(hostile, st.builds(nest, st.sampled_from([31, 32, 33]))))
            elif op.body is not None:
                body = draw(body_of(spec, op.body))
            else:
                body = draw(hostile)
        auth = draw(st.sampled_from(["token"] * 17 + ["none", "garbage", "expired"]))
        return Call(op, path_values, tuple(query), body, auth)

    return build()


def _quote(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@dataclass
class Tally:
    requests: int = 0
    skipped: int = 0  # URLs too long for httpx to send
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)


class Caller:
    def __init__(self, http: httpx.Client, ctx: dict[str, Any]) -> None:
        self.http = http
        self.ctx = ctx
        self.tally = Tally()

    def text(self, value: Any) -> str:
        if isinstance(value, Ref):
            return str(self.ctx[value.name])
        return value if isinstance(value, str) else dumps(value, self.ctx)

    def send(self, call: Call) -> None:
        path = call.op.path
        for name, value in zip(call.op.path_params, call.path_values, strict=True):
            path = path.replace("{" + name + "}", _quote(self.text(value)), 1)
        query = "&".join(f"{_quote(k)}={_quote(self.text(v))}" for k, v in call.query)
        headers = {
            "token": {"Authorization": f"Bearer {self.ctx['token']}"},
            "none": {},
            "garbage": {"Authorization": "Bearer eyJ.garbage.x"},
            "expired": {"Authorization": f"Bearer {self.ctx['expired_token']}"},
        }[call.auth]
        content: bytes | None = None
        if isinstance(call.body, bytes):
            content = call.body
        elif call.body is not None:
            content = dumps(call.body, self.ctx, ascii_only=False).encode()
        if content is not None:
            headers["Content-Type"] = "application/json"
        url = path + ("?" + query if query else "")
        if len(url) > MAX_URL:
            self.tally.skipped += 1
            return
        response = self.http.request(call.op.method, url, content=content, headers=headers)
        self.tally.requests += 1
        self.tally.statuses[response.status_code] += 1
        shown = f"{call.op.method} {url[:300]} {(content or b'')[:300]!r}"
        assert response.status_code < 500, (response.status_code, response.text[:500], shown)
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"}, (body, shown)
            error = body["error"]
            assert {"code", "message"} <= set(error), (body, shown)
            assert isinstance(error["message"], str), (body, shown)
            assert (response.status_code, error["code"]) in REST_ERRORS, (
                response.status_code,
                body,
                shown,
            )
            self.tally.codes[error["code"]] += 1


def test_hostile_requests_get_documented_answers(server: ServerProcess) -> None:
    ctx = contexts(server, [f"fzr-{new_id()[:6]}"])[0]
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        spec = http.get("/openapi.json").json()
        ops = operations(spec)
        assert len(ops) > 20, [(o.method, o.path) for o in ops]
        caller = Caller(http, ctx)
        assert http.get("/health").status_code == 200
        rss_before = rss_bytes(server)
        call = st.sampled_from(ops).flatmap(lambda op: call_for(spec, op))

        @fuzz_settings(EXAMPLES)
        @given(st.lists(call, min_size=BATCH, max_size=BATCH))
        def batch(calls: list[Call]) -> None:
            for one in calls:
                caller.send(one)

        batch()
        assert http.get("/health").status_code == 200
    grown = assert_healthy(server, rss_before)
    tally = caller.tally
    statuses = dict(sorted(tally.statuses.items()))
    print(
        f"\nrest fuzz: {tally.requests} requests ({tally.skipped} skipped) to {len(ops)} "
        f"operations in {time.monotonic() - started:.1f} s; statuses {statuses}; "
        f"codes {dict(tally.codes)}; memory +{grown / 2**20:.1f} MiB"
    )
    assert tally.requests >= EXAMPLES * BATCH * MULTIPLIER * 0.9
    assert tally.statuses[200] and tally.statuses[422] and tally.statuses[404]


def test_error_table_is_read() -> None:
    assert (422, "invalid") in REST_ERRORS and (500, "internal") in REST_ERRORS
    assert len(REST_ERRORS) > 10
    assert json.loads(json.dumps(sorted(REST_ERRORS)))
