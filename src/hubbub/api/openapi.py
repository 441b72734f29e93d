"""The OpenAPI 3.1 document, built from the routes' own declarations.

Each handler is declared with ``Operation``: its method, path, who may call
it (``auth``, see ``access.py``), request body, query parameters and
responses (as msgspec types). The same declarations register the Starlette
routes, decide what each route admits, and produce ``/openapi.json``, so the
document cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hubbub.api.access import Auth, Credential
from hubbub.api.schema import ErrorBody

C = TypeVar("C")
Handler = Callable[[Request, C], Awaitable[Response]]
"""A route's handler: the request, and the caller its operation's ``auth`` admitted."""


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    type: str = "integer"
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    min_length: int | None = None
    max_length: int | None = None

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.type}
        for key, value in (
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("minLength", self.min_length),
            ("maxLength", self.max_length),
        ):
            if value is not None:
                schema[key] = value
        return schema


@dataclass
class Operation(Generic[C]):
    method: str
    path: str
    summary: str
    handler: Handler[C]
    responses: dict[int, type | None]
    body: type | None = None
    query: list[Query] = field(default_factory=list)
    errors: tuple[int, ...] = ()
    tag: str = "chat"
    auth: Auth[C] = field(kw_only=True)
    """Required: who may call it. Enforced by the route, and the document's ``security``."""
    form: dict[str, Any] | None = field(default=None, kw_only=True)
    """A ``multipart/form-data`` body: its media type object (``schema``, ``encoding``)."""


PATH_BOUNDS: dict[str, dict[str, int]] = {
    "user_id": {"minLength": 1, "maxLength": 128},
    "emoji": {"minLength": 1, "maxLength": 32},
}

ERROR_DESCRIPTIONS = {
    401: "Missing, invalid or expired token (`unauthorized`)",
    403: "Not a member, not your role, or a credential this operation does not take (`forbidden`)",
    404: "No such resource (`not_found`)",
    409: "Conflicts with stored state (`conflict`)",
    413: "Body or list too large (`too_large`)",
    422: "Malformed request (`invalid`)",
    429: "Sending too fast (`rate_limited`); retry after `Retry-After` seconds",
    503: "Database, or the keys of HUBBUB_JWKS_URL, unavailable (`unavailable`); retry",
}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`Bearer`",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before sending again",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def build_spec(
    operations: list[Operation[Any]],
    version: str,
    limits: dict[str, dict[str, dict[str, int]]] | None = None,
) -> dict[str, Any]:
    """The document; ``limits`` adds configured bounds to schema properties.

    ``{"PostMessage": {"body": {"maxLength": 4000}}}``: the limits the settings
    decide, which the types cannot state.
    """
    types: list[Any] = [ErrorBody]
    for op in operations:
        types.extend(t for t in op.responses.values() if t is not None)
        if op.body is not None:
            types.append(op.body)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    ref = dict(zip(types, schemas, strict=True))
    for name, properties in (limits or {}).items():
        for prop, bounds in properties.items():
            components[name]["properties"][prop].update(bounds)
    paths: dict[str, dict[str, Any]] = {}
    names = [op.handler.__name__ for op in operations]
    for op in operations:
        name = op.handler.__name__
        if names.count(name) > 1:  # one handler serving several methods or paths
            name = f"{op.method.lower()}_{name}_{op.path.rsplit('/', 1)[-1]}"
        item: dict[str, Any] = {
            "summary": op.summary,
            "operationId": name,
            "tags": [op.tag],
            "responses": {},
        }
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", **PATH_BOUNDS.get(name, {})},
            }
            for name in _path_params(op.path)
        ]
        params += [
            {
                "name": q.name,
                "in": "query",
                "required": q.required,
                "description": q.description,
                "schema": q.schema(),
            }
            for q in op.query
        ]
        if params:
            item["parameters"] = params
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref[op.body]}},
            }
        if op.form is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": op.form},
            }
        if not op.auth.public:
            item["security"] = op.auth.security()
        for status, body in op.responses.items():
            response: dict[str, Any] = {"description": "OK" if status < 300 else "Error"}
            if body is not None:
                response["content"] = {"application/json": {"schema": ref[body]}}
            item["responses"][str(status)] = response
        for status in (*op.errors, *_common_errors(op)):
            item["responses"][str(status)] = {
                "description": ERROR_DESCRIPTIONS.get(status, "Error"),
                "content": {"application/json": {"schema": ref[ErrorBody]}},
                **({"headers": ERROR_HEADERS[status]} if status in ERROR_HEADERS else {}),
            }
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hubbub",
            "version": version,
            "description": "REST API of the hubbub chat server. The WebSocket protocol "
            "is described in docs/protocol.md.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Api-Key",
                    "description": "The app's backend (HUBBUB_API_KEY). With "
                    "X-On-Behalf-Of: USER it acts as that user; without, it may only "
                    "post system messages.",
                },
                "onBehalfOf": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-On-Behalf-Of",
                    "description": "With X-Api-Key: the user the app's backend acts as.",
                },
            },
        },
    }


def _common_errors(op: Operation[Any]) -> tuple[int, ...]:
    """Errors any such operation may answer, whatever its handler does.

    422: a NUL character in any path or query parameter, or a malformed
    ``X-On-Behalf-Of``; 413: a JSON body over its byte limit; 401 and 503:
    credentials refused, or the database (or the JWKS keys) not answering;
    403: the API key with (or without) ``X-On-Behalf-Of`` where the operation
    does not take it so.
    """
    if op.auth.public:
        return (422,)
    common: tuple[int, ...] = (401, 422, 503)
    if not {Credential.ON_BEHALF, Credential.API_KEY} <= set(op.auth.accepts):
        common += (403,)
    return common + ((413,) if op.body is not None else ())


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
