"""Health, the OpenAPI document and the plain-HTTP answers around the operations."""

from __future__ import annotations

import httpx

from hubbub import __version__
from hubbub.server import Hubbub
from tests.api.rest import bearer, error, ok


async def test_health_needs_no_credentials(rest: httpx.AsyncClient) -> None:
    health = ok(await rest.get("/health"))
    assert health == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "connections": 0,
        "version": __version__,
    }
    assert ok(await rest.get("/health", headers={"X-Api-Key": "wrong"}))["status"] == "ok"


async def test_health_reports_a_broker_not_reached(hubbub: Hubbub, rest: httpx.AsyncClient) -> None:
    hubbub.broker.healthy = False
    r = await rest.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "degraded"
    assert r.json()["broker"] == "unreachable"


async def test_the_document_lists_every_operation(hubbub: Hubbub, rest: httpx.AsyncClient) -> None:
    spec = ok(await rest.get("/openapi.json"))
    assert spec["openapi"] == "3.1.0" and spec["info"]["version"] == __version__
    listed = {(m.upper(), path) for path, item in spec["paths"].items() for m in item}
    assert listed == {(op.method, op.path) for op in hubbub.api.operations()}
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


async def test_unknown_routes_and_methods(rest: httpx.AsyncClient) -> None:
    assert error(await rest.get("/api/v1/nothing", headers=bearer("ann"))) == (404, "not_found")
    r = await rest.put("/api/v1/conversations", headers=bearer("ann"))
    assert error(r) == (405, "method_not_allowed")
    assert error(await rest.get("/ws")) == (426, "upgrade_required")
