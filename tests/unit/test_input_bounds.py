"""Bounds on what clients send: integers, NUL, nesting (protocol/bounds.py, parse)."""

from __future__ import annotations

import json

import pytest

from hubbub.protocol.bounds import MAX_DEPTH, MAX_INT, json_has_nul, too_deep
from hubbub.protocol.commands import Delivered, ProtocolError, Read, Resume, parse
from hubbub.store.search import fts_query

LIMIT = 64 * 1024


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def refused(raw: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse(raw, LIMIT)
    assert caught.value.error.message
    return caught.value


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "resume", "id": 1, "cursors": {"c_1": 2**63}},
        {"type": "resume", "id": 1, "cursors": {"c_1": MAX_INT + 1}},
        {"type": "resume", "id": 1, "cursors": {"c_1": -1}},
        {"type": "read", "id": 1, "conversation_id": "c_1", "seq": 2**63},
        {"type": "delivered", "id": 1, "conversation_id": "c_1", "seq": 10**20},
        {"type": "read", "id": 1, "conversation_id": "c_1", "seq": -1},
    ],
)
def test_integers_out_of_range_are_invalid(frame: dict[str, object]) -> None:
    error = refused(json.dumps(frame))
    assert (error.error.code, error.request_id) == ("invalid", 1)


def test_integers_in_range_pass() -> None:
    assert parse(json.dumps({"type": "resume", "cursors": {"c": MAX_INT}}), LIMIT) == Resume(
        cursors={"c": MAX_INT}
    )
    frame = {"type": "read", "id": -MAX_INT, "conversation_id": "c", "seq": MAX_INT}
    assert parse(json.dumps(frame), LIMIT) == Read(id=-MAX_INT, conversation_id="c", seq=MAX_INT)
    frame = {"type": "delivered", "id": MAX_INT, "conversation_id": "c", "seq": 0}
    assert parse(json.dumps(frame), LIMIT) == Delivered(id=MAX_INT, conversation_id="c", seq=0)


@pytest.mark.parametrize("rid", [MAX_INT + 1, -MAX_INT - 1, 2**64, 10**30])
def test_request_ids_out_of_range_are_invalid(rid: int) -> None:
    error = refused(json.dumps({"type": "ping", "id": rid}))
    assert (error.error.code, error.request_id) == ("invalid", None)


SEND = {"type": "message.send", "id": 2, "conversation_id": "c", "body": "b", "client_msg_id": "k"}


@pytest.mark.parametrize(
    "frame",
    [
        {**SEND, "body": "a\x00b"},
        {**SEND, "conversation_id": "c\x00"},
        {**SEND, "client_msg_id": "\x00"},
        {**SEND, "reply_to": "m\x00"},
        {**SEND, "body": "", "kind": "file", "attachments": ["u_\x00"]},
        {"type": "message.edit", "id": 2, "message_id": "m", "body": "\x00"},
        {"type": "reaction.add", "id": 2, "message_id": "m", "emoji": "\x00"},
        {"type": "typing", "id": 2, "conversation_id": "\x00", "state": "start"},
        {"type": "resume", "id": 2, "cursors": {"c_\x00": 1}},
        {"type": "ping", "id": 2, "ignored": "\x00"},
    ],
)
def test_nul_anywhere_in_a_frame_is_invalid(frame: dict[str, object]) -> None:
    raw = json.dumps(frame)
    assert "\\u0000" in raw
    error = refused(raw)
    assert (error.error.code, error.request_id) == ("invalid", 2)
    assert "NUL" in error.error.message
    assert refused(raw.encode()).error.code == "invalid"


def test_an_escaped_backslash_before_u0000_is_text_not_nul() -> None:
    body = "see \\u0000 in JSON, and \\\\u0000"
    raw = json.dumps({"type": "message.edit", "message_id": "m", "body": body})
    assert parse(raw, LIMIT).body == body  # type: ignore[attr-defined]
    assert not json_has_nul(raw)
    assert json_has_nul(json.dumps({"a": "\\\x00"}))  # a backslash, then NUL


@pytest.mark.parametrize(
    "raw",
    [
        nested(1000),
        nested(30_000),
        '{"type":"ping","id":3,"x":' + nested(1000) + "}",
        '{"type":"message.send","id":3,"conversation_id":"c","client_msg_id":"k","body":'
        + nested(MAX_DEPTH)
        + "}",
        '{"type":"ping","id":3,"x":' + nested(MAX_DEPTH) + "}",
        "{" * 5000 + "}" * 5000,
    ],
)
def test_deep_nesting_is_invalid(raw: str) -> None:
    assert refused(raw).error.code == "invalid"
    assert refused(raw.encode()).error.code == "invalid"


def test_nesting_to_the_limit_passes() -> None:
    raw = '{"type":"ping","id":3,"x":' + nested(MAX_DEPTH - 1) + "}"
    assert parse(raw, LIMIT).id == 3
    assert not too_deep(json.loads(raw))
    assert too_deep(json.loads('{"x":' + nested(MAX_DEPTH) + "}"))
    # Brackets in text do not count.
    assert parse('{"type":"ping","id":4,"x":"' + "[" * 5000 + '"}', LIMIT).id == 4


@pytest.mark.parametrize(
    "text",
    ['"', '""', "*", "a*", "NEAR(", "NEAR(a b)", "AND", "OR", "NOT", "-", "-a", "^a", "a:b",
     "body:x", "(", ")", "{a}", "[", "+", "\\", "'", "\x00", "a\x00b", "\x00 \x00", "\x1f",
     "\u2028", "\x85", "\ufeff", 'a"b', '"a b"', "a OR b", "x" * 300],
)  # fmt: skip
def test_fts_query_is_plain_words(text: str) -> None:
    query = fts_query(text)
    assert "\x00" not in query
    for word in query.split(" ") if query else []:
        assert word.startswith('"') and word.endswith('"')
        assert '"' not in word[1:-1].replace('""', "")
