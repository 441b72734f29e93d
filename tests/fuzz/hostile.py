"""Hostile input for the fuzz tests: Hypothesis strategies, JSON text, documented codes.

Values are trees of JSON values plus two markers: ``Ref`` (resolved, when the
frame is written, to one of the connection's real ids, so near-valid frames
reach the handlers behind the parser) and ``Raw`` (JSON text written as it is:
numbers no encoder writes, ``NaN``). Objects are lists of key/value pairs, so
that a key may repeat.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from hubbub import errors

ROOT = Path(__file__).resolve().parents[2]
MULTIPLIER = max(1, int(os.environ.get("HUBBUB_FUZZ_EXAMPLES", "1") or "1"))
"""``make fuzz`` sets it: every fuzz test runs this many times its examples."""


def fuzz_settings(examples: int) -> settings:
    """``examples`` (times the multiplier) against a live server.

    A short run (``make test``) is derandomized: the same examples on every
    run, so CI is reproducible and its time stable. A long run draws new ones
    each time; a failure prints the ``@seed`` that reproduces it.
    """
    return settings(
        max_examples=examples * MULTIPLIER,
        deadline=None,
        database=None,
        derandomize=MULTIPLIER == 1,
        print_blob=True,
        # No shrinking and no explaining: the server keeps state between
        # examples, so a smaller replay need not fail the same way; the
        # assertions show the frames or requests of the failing batch instead.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


# Documented codes -------------------------------------------------------------


def _table_codes(doc: str, heading: str) -> list[tuple[str, ...]]:
    """The rows of the first table under ``heading``: the backquoted or plain cells."""
    text = (ROOT / "docs" / doc).read_text()
    section = text.split(f"\n{heading}\n", 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    rows: list[tuple[str, ...]] = []
    for line in section.splitlines():
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = tuple(c.strip().strip("`") for c in line.strip("|").split("|"))
        rows.append(cells)
    return rows[1:]  # the header row


def ws_error_codes() -> frozenset[str]:
    """The codes of docs/protocol.md, "Error codes"."""
    return frozenset(row[0] for row in _table_codes("protocol.md", "## Error codes"))


def ws_close_codes() -> frozenset[int]:
    """The close codes of docs/protocol.md, "Close codes"."""
    return frozenset(int(row[0]) for row in _table_codes("protocol.md", "## Close codes"))


def rest_errors() -> frozenset[tuple[int, str]]:
    """(status, code) pairs of docs/rest.md, "Errors"."""
    return frozenset((int(row[0]), row[1]) for row in _table_codes("rest.md", "## Errors"))


def domain_codes() -> frozenset[str]:
    """The codes of hubbub.errors, the vocabulary every transport maps."""
    found = {errors.HubbubError.code}
    pending: list[type[errors.HubbubError]] = [errors.HubbubError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.add(sub.code)
            pending.append(sub)
    return frozenset(found)


# Value trees ------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A real id of the connection's context (``cid``, ``mid``, ...)."""

    name: str


@dataclass(frozen=True)
class Raw:
    """JSON text written verbatim."""

    text: str


@dataclass(frozen=True)
class Obj:
    """A JSON object as pairs: keys may repeat."""

    pairs: tuple[tuple[Any, Any], ...]  # keys: text, or a Ref


def dumps(value: Any, ctx: Mapping[str, Any], ascii_only: bool = True) -> str:
    """JSON text of a value tree; lone surrogates are always escaped (``\\ud800``)."""
    if isinstance(value, Ref):
        return dumps(ctx[value.name], ctx, ascii_only)
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj):
        return (
            "{"
            + ",".join(
                dumps(k, ctx, ascii_only) + ":" + dumps(v, ctx, ascii_only) for k, v in value.pairs
            )
            + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v, ctx, ascii_only) for v in value) + "]"
    if isinstance(value, str):
        return _string(value, ascii_only)
    return json.dumps(value)


def _string(text: str, ascii_only: bool) -> str:
    if not ascii_only:
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate: only its escape is JSON
            return json.dumps(text)
        return json.dumps(text, ensure_ascii=False)
    return json.dumps(text)


# Strategies -------------------------------------------------------------------

BIG_INTS = [2**63, 2**63 - 1, 2**64, -1, -(2**63), 2**53, 2**53 - 1, -(2**53), 0, 10**30]
RAW_NUMBERS = ["123456789012345678901234567890", "-0", "1E2", "1e-400", "0.0000000000000000001"]
OVERFLOWING = ["1e400", "-1e400", "1.0e+9999"]
"""JSON numbers beyond a double: valid JSON, which msgspec refuses to read."""
NASTY_TEXT = [
    "",
    " ",
    "\t\n",
    "NaN",
    "Infinity",
    "-Infinity",
    "null",
    "true",
    "0",
    "\x00",
    "a\x00b",
    "\\u0000",
    "\ud800",
    "\udfff",
    "x\udc00y",
    "\ud83d",
    "\x01\x1f\x7f\x80\x9f",
    "\u2028\u2029",
    "\ufeff",
    "\u202e",
    "😀" * 3,
    "c_",
    "m_",
    "u_",
    "c_../../x",
    "../../etc/passwd",
    "%00",
    "' OR 1=1 --",
    '"; DROP TABLE messages; --',
    "<script>",
    "a" * 129,
]
LONG_LENGTHS = [129, 201, 4000, 4001, 70_000]

control_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp", "So"]),
    max_size=12,
)
any_text = st.text(max_size=24) | control_text | st.sampled_from(NASTY_TEXT)
long_text = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["a", "é", "😀", " ", "\x00", "\ud800"]),
    st.sampled_from(LONG_LENGTHS),
)
url_text = st.sampled_from(
    [c * n for c in ["a", "é", "😀", " ", "\x00", "\ud800"] for n in (129, 201, 1500)]
    + ["a" * 20_000]
)
"""Long, for a path or a query: the last is beyond the 16 KiB head limit."""
surrogate_text = st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=3)
scalars: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(BIG_INTS),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0]),
    st.sampled_from(RAW_NUMBERS + OVERFLOWING).map(Raw),
    st.booleans(),
    st.none(),
    any_text,
    surrogate_text,
)


def nest(depth: int, leaf: Any = 1) -> Any:
    value: Any = leaf
    for i in range(depth):
        value = [value] if i % 2 else Obj((("k", value),))
    return value


nested: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(st.tuples(any_text, inner), max_size=4).map(lambda p: Obj(tuple(p)))
    ),
    max_leaves=12,
)
hostile: st.SearchStrategy[Any] = st.one_of(
    scalars,
    nested,
    long_text,
    st.builds(nest, st.sampled_from([2, 30, 31, 32, 33, 40])),
)


def field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value: mostly well-formed, often hostile."""
    return st.one_of(good, good, hostile)


cid = st.sampled_from([Ref("cid"), Ref("quiet_cid"), Ref("foreign_cid"), "c_nosuch", "c_"])
mid = st.sampled_from([Ref("mid"), Ref("mid2"), Ref("foreign_mid"), "m_nosuch", "m_"])
body = st.one_of(st.text(min_size=1, max_size=40), st.sampled_from(["hi", " ", "", "\u200b"]))
client_msg_id = st.one_of(st.uuids().map(str), st.sampled_from(["a1", "", "x" * 128, "x" * 129]))
seq = st.one_of(st.integers(0, 50), st.sampled_from(BIG_INTS))
emoji = st.one_of(st.sampled_from(["👍", "🎉", "x", "a b", "", "x" * 32, "x" * 33]), any_text)
kind = st.sampled_from(["text", "image", "file", "system", "video", ""])
upload_ids: list[Any] = [Ref("upload"), "u_nosuch", Ref("foreign_upload")]
attachments = st.lists(st.sampled_from(upload_ids), max_size=12)
cursor_keys: st.SearchStrategy[Any] = st.one_of(cid, any_text)
cursor_map = st.lists(st.tuples(cursor_keys, field(seq)), max_size=4).map(lambda p: Obj(tuple(p)))
token = st.sampled_from([Ref("token"), Ref("other_token"), Ref("expired_token"), "eyJ.x.y", ""])

COMMANDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "message.send": {
        "conversation_id": cid,
        "body": body,
        "client_msg_id": client_msg_id,
        "reply_to": st.one_of(mid, st.none()),
        "kind": kind,
        "attachments": attachments,
    },
    "message.edit": {"message_id": mid, "body": body},
    "message.delete": {"message_id": mid},
    "read": {"conversation_id": cid, "seq": seq},
    "delivered": {"conversation_id": cid, "seq": seq},
    "reaction.add": {"message_id": mid, "emoji": emoji},
    "reaction.remove": {"message_id": mid, "emoji": emoji},
    "typing": {"conversation_id": cid, "state": st.sampled_from(["start", "stop", "START", ""])},
    "resume": {"cursors": cursor_map},
    "ping": {},
    "token.refresh": {"token": token},
}
UNSAFE_COMMANDS = {"message.delete"}
"""Rarer than the others, so that the real messages outlive most of a run."""

bad_ids = st.one_of(
    st.sampled_from([2**53, -(2**53), 2**63, 1.5, True, "i" * 129, Raw("1e400")]),
    st.lists(st.integers(), max_size=2),
    st.builds(lambda: Obj((("n", 1),))),
)


@dataclass
class Frame:
    """One WebSocket frame to send.

    ``rid`` is the id the reply must echo, when the frame carries a unique,
    valid one. A text frame's ``data`` is text, or bytes that may not be
    UTF-8; ``binary`` sends it as a binary frame.
    """

    data: str | bytes
    rid: str | None = None
    binary: bool = False

    @property
    def valid_utf8(self) -> bool:
        if isinstance(self.data, str):
            return True
        try:
            self.data.decode()
        except UnicodeDecodeError:
            return False
        return True

    def size(self) -> int:
        return len(self.data.encode() if isinstance(self.data, str) else self.data)


@dataclass(frozen=True)
class Draft:
    """A frame before its context is known: a value tree, and how its id is set."""

    tree: Any  # an Obj, or any value for frames that are not objects
    with_id: bool  # give it a unique id the reply must echo
    ascii_only: bool

    def render(self, ctx: Mapping[str, Any], rid: str) -> Frame:
        tree = self.tree
        if self.with_id and isinstance(tree, Obj):
            tree = Obj((("id", rid), *tree.pairs))
            return Frame(dumps(tree, ctx, self.ascii_only), rid)
        return Frame(dumps(tree, ctx, self.ascii_only))


@st.composite
def command_draft(draw: st.DrawFn) -> Draft:
    """A frame of a documented command, each field well-formed, hostile or missing."""
    name = draw(st.sampled_from(sorted(COMMANDS)))
    if name in UNSAFE_COMMANDS and draw(st.integers(0, 9)) < 9:
        name = "ping"
    pairs: list[tuple[str, Any]] = []
    type_value: Any = name
    if draw(st.integers(0, 19)) == 19:
        type_value = draw(st.one_of(hostile, st.sampled_from(["Ping", "message.sen", "ack"])))
    if draw(st.integers(0, 29)) < 29:
        pairs.append(("type", type_value))
    for key, good in COMMANDS[name].items():
        choice = draw(st.integers(0, 9))
        if choice == 9:
            continue  # missing
        pairs.append((key, draw(hostile if choice == 8 else good)))
    for _ in range(draw(st.integers(0, 2))):  # unknown fields
        pairs.insert(
            draw(st.integers(0, len(pairs))),
            (draw(any_text | st.sampled_from(["__proto__", "ID", "Type"])), draw(hostile)),
        )
    if pairs and draw(st.integers(0, 9)) == 9:  # a key twice: the last one counts
        key = draw(st.sampled_from([k for k, _ in pairs if k != "id"] or ["x"]))
        pairs.append((key, draw(hostile)))
    with_id = draw(st.integers(0, 9)) < 9
    if not with_id and draw(st.booleans()):
        pairs.insert(0, ("id", draw(bad_ids)))
    return Draft(Obj(tuple(pairs)), with_id, draw(st.booleans()))


def _truncate(text: str, at: float) -> str:
    return text[: int(len(text) * at)]


@st.composite
def garbage(draw: st.DrawFn) -> Frame:
    """Not a frame of the protocol at all (but valid UTF-8 when it is text)."""
    choice = draw(st.integers(0, 8))
    if choice == 0:
        raw = draw(st.binary(max_size=120))
        return Frame(raw.decode("utf-8", "replace"))
    if choice == 1:
        return Frame(draw(st.binary(max_size=120)), binary=True)
    if choice == 2:
        return Frame(draw(st.text(max_size=80)))
    if choice == 3:
        n = draw(st.sampled_from([31, 32, 33, 100, 300, 999, 1001, 5000]))
        opener = draw(st.sampled_from(["[", '{"a":', '{"type":"ping","x":[']))
        closer = {"[": "]", '{"a":': "}", '{"type":"ping","x":[': "]}"}[opener]
        balanced = draw(st.booleans())
        return Frame(opener * n + "1" + (closer * n if balanced else ""))
    if choice == 4:
        value = draw(nested)
        return Frame(dumps(value, {}, draw(st.booleans())))
    if choice == 5:
        full = '{"type":"message.send","id":1,"conversation_id":"c_x","body":"hi"}'
        return Frame(_truncate(full, draw(st.floats(0, 0.99))))
    if choice == 6:
        return Frame(draw(st.sampled_from(["", " ", "{}", "[]", "null", "NaN", "{", "}", '"x"'])))
    if choice == 7:
        broken = [
            '{"type":"ping"',
            '{"type":"ping",}',
            "{'t':'p'}",
            '{"type":"ping","x":"a\x00\n"}',
        ]
        return Frame(draw(st.sampled_from(broken)))
    return Frame(
        "{" + ",".join(f'"{k}":1' for k in draw(st.lists(st.text(max_size=4), max_size=5))) + "}"
    )


item = st.one_of(command_draft(), command_draft(), command_draft(), garbage())
"""Three near-valid frames for each piece of garbage."""

BAD_UTF8 = [
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # an encoded surrogate (CESU-8)
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xc0\xaf",  # overlong
    b'{"type":"ping","id":"x\xe2\x82"}',
]
HARD_CEILING = 1 << 20


@st.composite
def closer(draw: st.DrawFn) -> Frame | None:
    """Mostly nothing; sometimes a frame after which the server closes (1007, 1009)."""
    choice = draw(st.integers(0, 24))
    if choice in (21, 22, 23):
        return Frame(draw(st.sampled_from(BAD_UTF8)))
    if choice == 24:
        return Frame('{"type":"ping","id":"huge","x":"' + "a" * HARD_CEILING + '"}')
    return None
