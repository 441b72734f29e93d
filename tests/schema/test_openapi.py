"""Schemathesis against ``/openapi.json``: every operation, on SQLite and PostgreSQL.

Requests, valid and invalid (Schemathesis's coverage cases, then Hypothesis's
generated ones), to every documented operation of a real server holding a few
conversations, messages and a file; path parameters mostly name those. Each
call is authenticated as its ``security`` allows: the caller's bearer token,
or the API key alone where that is all an operation takes (and for about half
the cases of one that takes either). No answer may be a server error or differ
from the document: status code, content type, headers, body schema. Bounded
and deterministic: a few examples per operation, derandomized, no example
database; ``HUBBUB_SCHEMA_EXAMPLES=N`` runs N times as many.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.services import fresh_postgres_sync
from tests.support import ServerProcess, auth, new_id, token

API_KEY = "schema-test-key"
CALLER = "alice"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SEND_LIMITS = {
    "HUBBUB_SEND_RATE": "10",
    "HUBBUB_SEND_BURST": "30",
    "HUBBUB_SEND_RATE_SERVER": "10",
}
"""Low enough that the run also meets 429 (and its ``Retry-After``)."""
CONFIG = {
    "generation": {"with-security-parameters": False},
    "phases": {"coverage": {"unexpected-methods": []}},
}
SCALE = int(os.environ.get("HUBBUB_SCHEMA_EXAMPLES", "1"))
EXAMPLES = 50 * SCALE
"""Generated cases per operation, besides the coverage cases (times HUBBUB_SCHEMA_EXAMPLES)."""
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
)
"""The same examples every run; a failure is reported, not shrunk."""


@dataclass
class Seeded:
    """A server and what was stored on it before the run, by path parameter name."""

    server: ServerProcess
    known: dict[str, list[str]]
    bearer: dict[str, str]

    def credentials(self, case: Case[Any]) -> dict[str, str]:
        """The caller's token, or the API key alone where it is all the operation takes.

        An operation that takes either gets the key for about half of its cases.
        """
        security: list[dict[str, list[str]]] = case.operation.definition.raw.get("security", [])
        key = {"X-Api-Key": API_KEY}
        if not security:
            return {}
        if {"bearer": []} not in security:
            return key
        if {"apiKey": []} in security:
            return key if pick(case.body, ["key"]) == "key" else self.bearer
        return self.bearer


def pick(generated: object, known: Sequence[str]) -> object:
    """Mostly a stored id, so that operations reach stored data; else the generated value."""
    index = zlib.crc32(repr(generated).encode()) % (len(known) + 1)
    return generated if index == len(known) else known[index]


def ok(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in (statuses or (200, 201)), response.text
    body: dict[str, Any] = response.json()
    return body


def seed(server: ServerProcess) -> Seeded:
    """Conversations of every kind, the caller's and others' messages, an edit, a file,
    push devices."""
    with httpx.Client(base_url=server.url, timeout=10) as http:

        def create(user: str, **body: Any) -> str:
            made = ok(http.post("/api/v1/conversations", headers=auth(user), json=body))
            return str(made["conversation"]["id"])

        def send(user: str, cid: str, text: str, **extra: Any) -> str:
            body = {"body": text, "client_msg_id": new_id(), **extra}
            r = http.post(f"/api/v1/conversations/{cid}/messages", headers=auth(user), json=body)
            return str(ok(r)["message"]["id"])

        group = create(CALLER, kind="group", title="team", members=["bob", "carol"])
        room = create(CALLER, kind="room", title="lobby")
        direct = create(CALLER, kind="direct", members=["bob"])
        theirs = create("bob", kind="group", title="bob's", members=[CALLER])
        closed = create("bob", kind="group", title="private", members=["carol"])
        other_room = create("carol", kind="room", title="elsewhere")
        files = {"file": ("note.txt", b"hello", "text/plain")}
        upload = ok(http.post("/api/v1/uploads", headers=auth(CALLER), files=files), 201)
        upload_id = str(upload["upload"]["id"])
        mine = send(CALLER, group, "hello team")
        edited = send(CALLER, direct, "hello bob")
        r = http.patch(f"/api/v1/messages/{edited}", headers=auth(CALLER), json={"body": "hi bob"})
        ok(r)
        attached = send(CALLER, group, "a file", kind="file", attachments=[upload_id])
        reply = send("bob", group, "welcome", reply_to=mine)
        elsewhere = send("bob", theirs, "my group")
        hidden = send("carol", closed, "not for alice")

        def device(user: str) -> str:
            body = {
                "provider": "expo",
                "token": f"ExponentPushToken[{new_id()}]",
                "platform": "ios",
            }
            return str(
                ok(http.post("/api/v1/push/devices", headers=auth(user), json=body))["device"]["id"]
            )

        devices = [device(CALLER), device("bob")]
        r = http.put(f"/api/v1/messages/{mine}/reactions/%F0%9F%91%8D", headers=auth("bob"))
        ok(r)
    return Seeded(
        server,
        {
            "conversation_id": [group, room, direct, theirs, closed, other_room],
            "message_id": [mine, edited, attached, reply, elsewhere, hidden],
            "upload_id": [upload_id],
            "device_id": devices,
            "user_id": ["bob", "carol", CALLER],
        },
        {"Authorization": f"Bearer {token(CALLER, ttl=3600)}"},
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    with ExitStack() as stack:
        env = {"HUBBUB_API_KEY": API_KEY, **SEND_LIMITS}
        if request.param == "postgres":
            env["HUBBUB_DATABASE_URL"] = stack.enter_context(fresh_postgres_sync())
        server = ServerProcess(tmp_path_factory.mktemp(f"schema-{request.param}"), **env)
        stack.callback(server.stop)
        yield seed(server.start())


@pytest.fixture(scope="module")
def api_schema(api: Seeded) -> BaseSchema:
    config = schemathesis.Config.from_dict(CONFIG)
    return schemathesis.openapi.from_url(api.server.url + "/openapi.json", config=config)


def failures_of(api: Seeded, operation: APIOperation[Any, Any, Any, Any]) -> dict[str, str]:
    """The distinct check failures of ``operation``'s cases: title to report.

    Schemathesis's coverage cases (boundary values, missing and malformed
    input), then Hypothesis's generated ones.
    """
    found: dict[str, str] = {}

    def exercise(case: Case[Any]) -> None:
        for name, value in list(case.path_parameters.items()):
            if name in api.known:
                case.path_parameters[name] = pick(value, api.known[name])
        if isinstance(case.query, dict) and "conversation_id" in case.query:
            query = case.query
            query["conversation_id"] = pick(query["conversation_id"], api.known["conversation_id"])
        try:
            case.call_and_validate(headers=api.credentials(case), checks=CHECKS, timeout=10)
        except FailureGroup as group:
            for failure in group.exceptions:
                found.setdefault(f"{operation.label}: {failure.title}", str(group))

    schema = operation.schema
    generation = schema.config.generation_for(operation=operation, phase="coverage")
    modes = list(GenerationMode)
    for case in schema.iter_coverage_cases(
        operation, generation_modes=modes, generation_config=generation
    ):
        exercise(case)

    @hypothesis.settings(SETTINGS)
    @hypothesis.given(st.one_of([operation.as_strategy(mode) for mode in modes]))
    def fuzz(case: Case[Any]) -> None:
        exercise(case)

    fuzz()
    return found


def drops_the_caller(operation: APIOperation[Any, Any, Any, Any]) -> bool:
    """Whether the operation may take the caller out of the stored data (run those last)."""
    return operation.method.upper() == "DELETE" or operation.path.endswith(("/leave", "/role"))


@pytest.mark.timeout(300 * SCALE)
def test_api_matches_its_document(api: Seeded, api_schema: BaseSchema) -> None:
    found: dict[str, str] = {}
    results = list(api_schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) > 30
    for operation in sorted(operations, key=drops_the_caller):
        found.update(failures_of(api, operation))
    assert not found, "\n\n".join([*found, *found.values()])
    assert "Traceback" not in api.server.log.read_text()
