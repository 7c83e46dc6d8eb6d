"""Ops endpoints and the HTTP error contract, in embedded and scaled mode."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.jsonio import JSONResponse, read_json
from tests.conftest import make_settings
from tests.support.appserver import AppServer
from tests.support.contract import assert_conforms


class EchoBody(BaseModel):
    name: str = Field(min_length=1)
    count: int = 0


async def echo(request: Request) -> Response:
    body = await read_json(request, EchoBody)
    return JSONResponse(body.model_dump())


async def test_health_reports_components(app_server: AppServer, backend: dict[str, str]) -> None:
    async with app_server.client() as client:
        response = await client.get("/api/health")
        # Database and migrations known (the app server checked readiness before serving): the
        # answer with every component is the documented `Health`.
        await assert_conforms(client, response, "GET", "/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["components"]["database"]["status"] == "ok"
    expected_redis = "ok" if "REDIS_URL" in backend else "disabled"
    assert body["components"]["redis"]["status"] == expected_redis


async def test_ready_checks_database_migrations_and_redis(app_server: AppServer) -> None:
    async with app_server.client() as client:
        response = await client.get("/api/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    assert body["components"]["migrations"]["status"] == "ok"
    assert body["failed"] == []


async def test_ready_is_503_while_draining(app_server: AppServer) -> None:
    app_server.resources.lifecycle.start_draining()
    async with app_server.client() as client:
        response = await client.get("/api/ready")
    assert response.status_code == 503
    assert response.json()["failed"] == ["lifecycle"]


async def test_metrics_parse_and_hold_request_histogram(app_server: AppServer) -> None:
    async with app_server.client() as client:
        for _ in range(3):
            await client.get("/api/health")
        await client.get("/no/such/page")
        text = (await client.get("/metrics")).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    histogram = families["vonix_http_request_duration_seconds"]
    assert histogram.type == "histogram"
    counts = [s for s in histogram.samples if s.name.endswith("_count")
              and s.labels["route"] == "/api/health" and s.labels["status"] == "200"]
    assert counts and counts[0].value == 3
    requests = families["vonix_http_requests"]
    routes = {s.labels["route"] for s in requests.samples}
    assert "<unmatched>" in routes
    assert "/no/such/page" not in routes
    assert "process_resident_memory_bytes" in text
    if "vonix_redis_up" in families:
        assert families["vonix_redis_up"].samples[0].value == 1


async def test_request_id_is_taken_or_made(app_server: AppServer) -> None:
    async with app_server.client() as client:
        given = await client.get("/api/health", headers={"X-Request-ID": "abc-123"})
        made = await client.get("/api/health")
        bogus = await client.get("/api/health", headers={"X-Request-ID": "bad id with spaces"})
    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    assert bogus.headers["x-request-id"] != "bad id with spaces"


async def test_not_found_uses_error_shape(app_server: AppServer) -> None:
    async with app_server.client() as client:
        response = await client.get("/api/nothing")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert error["request_id"] == response.headers["x-request-id"]


async def test_security_headers_present(app_server: AppServer) -> None:
    async with app_server.client() as client:
        response = await client.get("/api/health")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.fixture
async def echo_server(backend: dict[str, str]) -> AppServer:
    server = AppServer(make_settings(**backend))
    server.app.router.routes.append(Route("/api/test/echo", echo, methods=["POST"]))
    async with server:
        yield server


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        (b'{"name": ', {"content-type": "application/json"}, 400, "invalid_json"),
        (b"name=x", {"content-type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        (b'{"name": "x"}', {}, 415, "unsupported_media_type"),
        (b"", {"content-type": "application/json"}, 400, "empty_body"),
        (b'{"name": "", "count": "many"}', {"content-type": "application/json"}, 422, "validation_failed"),
    ],
)
async def test_bad_bodies_get_error_shape(
    echo_server: AppServer, caplog: pytest.LogCaptureFixture,
    content: bytes, headers: dict[str, str], status: int, code: str,
) -> None:
    caplog.set_level(logging.INFO)
    async with echo_server.client() as client:
        response = await client.post("/api/test/echo", content=content, headers=headers)
        ok = await client.post("/api/test/echo", json={"name": "still fine"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    if status == 422:
        fields = {d["field"] for d in error["details"]}
        assert fields == {"name", "count"}
    assert ok.status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_oversize_body_is_413(echo_server: AppServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'

    async def chunks():  # no Content-Length: the limit must hold on streamed bodies too
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    async with echo_server.client() as client:
        declared = await client.post("/api/test/echo", content=big,
                                     headers={"content-type": "application/json"})
        streamed = await client.post("/api/test/echo", content=chunks(),
                                     headers={"content-type": "application/json"})
        ok = await client.post("/api/test/echo", json={"name": "x" * 1000})
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
    assert ok.status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_unexpected_error_is_500_without_stack(backend: dict[str, str]) -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("secret internals")

    server = AppServer(make_settings(**backend))
    server.app.router.routes.append(Route("/api/test/boom", boom))
    async with server, server.client() as client:
        response = await client.get("/api/test/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
