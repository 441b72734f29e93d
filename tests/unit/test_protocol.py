"""The pure protocol layer: bytes in, commands out; events to bytes."""

from __future__ import annotations

import json

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from hubbub.models import Message, StreamEvent
from hubbub.protocol import events
from hubbub.protocol.commands import Ping, ProtocolError, Resume, SendMessage, parse
from hubbub.protocol.wsframe import text_frame, unframe

LIMIT = 1024


def test_parse_send() -> None:
    cmd = parse(
        b'{"type":"message.send","id":7,"conversation_id":"c1","body":"hi","client_msg_id":"x"}',
        LIMIT,
    )
    assert cmd == SendMessage(id=7, conversation_id="c1", body="hi", client_msg_id="x")


def test_parse_resume_and_ping_with_string_ids() -> None:
    assert parse('{"type":"resume","id":"r","cursors":{"c1":3}}', LIMIT) == Resume(
        id="r", cursors={"c1": 3}
    )
    assert parse('{"type":"ping"}', LIMIT) == Ping(id=None)


def test_unknown_fields_are_ignored() -> None:
    assert parse('{"type":"ping","id":1,"extra":true}', LIMIT) == Ping(id=1)


@pytest.mark.parametrize(
    ("raw", "code", "rid"),
    [
        (b"{", "invalid", None),
        (b"null", "invalid", None),
        (b'"text"', "invalid", None),
        (b'{"id":3}', "invalid", 3),
        (b'{"type":5,"id":3}', "invalid", 3),
        (b'{"type":"nope","id":"q"}', "unknown_type", "q"),
        (b'{"type":"message.send","id":4,"body":"x","client_msg_id":"y"}', "invalid", 4),
        (b'{"type":"resume","id":5,"cursors":{"c":"x"}}', "invalid", 5),
        (b'{"type":"ping","id":true}', "invalid", None),
        (b'{"type":"ping","id":"' + b"i" * 129 + b'"}', "invalid", None),
        (b"x" * (LIMIT + 1), "too_large", None),
    ],
)
def test_refusals_carry_code_and_readable_id(raw: bytes, code: str, rid: object) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse(raw, LIMIT)
    assert refused.value.error.code == code
    assert refused.value.request_id == rid
    assert refused.value.error.message


@pytest.mark.parametrize(
    ("raw", "rid"),
    [
        (b'{"type":"ping","id":8,"x":1e400}', 8),
        (b'{"type":"read","id":"n","conversation_id":"c","seq":-1.0e+9999}', "n"),
        (b'{"type":"message.send","id":9,"body":"\\ud83d","client_msg_id":"y"}', 9),
        (b'{"\\udfff":1,"type":"ping","id":"k"}', "k"),
        (b'{"type":"ping","id":"\\ud800"}', None),  # an id that cannot be echoed
        (b'{"type":"ping","id":3,"x":1e400', None),  # truncated: no JSON at all
    ],
)
def test_json_msgspec_cannot_read_still_names_its_id(raw: bytes, rid: object) -> None:
    """A lone surrogate escape or a number beyond a double is valid JSON (a JS
    client's JSON.stringify writes the first), so the refusal names the request."""
    with pytest.raises(ProtocolError) as refused:
        parse(raw, LIMIT)
    assert refused.value.error.code == "invalid"
    assert refused.value.request_id == rid
    with pytest.raises(ProtocolError) as too_large:
        parse(raw + b" " * LIMIT, LIMIT)
    assert too_large.value.error.code == "too_large"
    assert too_large.value.request_id == rid


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frame_is_a_valid_unmasked_frame(size: int) -> None:
    payload = b"a" * size
    reader = StreamReader()
    reader.feed_data(text_frame(payload))
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    else:  # pragma: no cover
        raise AssertionError("incomplete frame")
    assert frame.opcode is Opcode.TEXT and frame.fin and frame.data == payload


def test_events_put_type_first() -> None:
    message = Message(
        id="m1",
        conversation_id="c1",
        seq=1,
        sender_id="u",
        body="b",
        client_msg_id="x",
        created_at="2026-01-01T00:00:00.000Z",
    )
    encoded = events.stream(
        StreamEvent(conversation_id="c1", seq=1, type="message.new", message=message)
    )
    assert encoded.startswith(b'{"type":"message.new","conversation_id":"c1","seq":1,')
    assert json.loads(encoded)["message"]["seq"] == 1
    joined = events.stream(
        StreamEvent(conversation_id="c1", seq=2, type="member.joined", data={"user_id": "v"})
    )
    assert json.loads(joined) == {
        "type": "member.joined",
        "conversation_id": "c1",
        "seq": 2,
        "user_id": "v",
    }
    assert events.ack(3, ok=True).startswith(b'{"type":"ack","id":3')
    assert json.loads(events.error("r", "invalid", "no")) == {
        "type": "error",
        "id": "r",
        "code": "invalid",
        "message": "no",
    }
    assert json.loads(events.http_error("forbidden", "x")) == {
        "error": {"code": "forbidden", "message": "x"}
    }


def test_unframe_reads_back_every_header_size() -> None:
    payloads = [b"a", b"b" * 200, b"c" * 70_000]
    joined = b"".join(text_frame(p) for p in payloads)
    assert list(unframe(joined)) == payloads
