"""Observability and resilience: request-scoped logs, error groups, alerts, breakers, metrics, traces."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.infra.breaker import BreakerPolicy, Breakers, CircuitOpen
from server.observability.logging import configure_logging
from server.observability.metrics import Metrics
from tests.conftest import make_settings
from tests.support.accounts import PASSWORD, bearer, login, make_admin, register
from tests.support.appserver import AppServer
from tests.support.contract import assert_conforms
from tests.support.http_recorder import HttpRecorder
from tests.support.wsclient import WsClient


async def boom(request: Request) -> Response:
    raise RuntimeError("kaboom: database row 7 exploded")


def with_boom(server: AppServer) -> AppServer:
    # Left out of the OpenAPI document (the tests below also read it): a test-only route.
    server.app.router.routes.append(Route("/api/test/boom", boom, include_in_schema=False))
    return server


async def test_request_log_lines_share_the_request_id(app_server: AppServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with app_server.client() as client:
        await register(client, "Logan")
        caplog.clear()
        response = await client.post("/api/auth/login", json={"login": "logan", "password": PASSWORD},
                                     headers={"X-Request-ID": "req-logan-1"})
        missing = await client.get("/api/rooms/nope/join", headers={"X-Request-ID": "req-logan-2"})
    assert response.headers["x-request-id"] == "req-logan-1"
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("request_id") == "req-logan-1"]
    events = {line["event"] for line in lines}
    assert {"audit", "request"} <= events, events
    assert all(line.get("route") == "/api/auth/login" for line in lines if line["event"] == "audit")
    assert missing.json()["error"]["request_id"] == "req-logan-2"


def test_json_logs_are_one_object_per_line() -> None:
    stream = io.StringIO()
    configure_logging("INFO", json_logs=True, stream=stream)
    try:
        logging.getLogger("vonix.test").info("plain stdlib line")
        from server.observability.logging import get_logger

        get_logger("vonix.test").info("structured", answer=42, password="hunter2")
    finally:
        configure_logging("INFO", json_logs=False)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "plain stdlib line" and lines[0]["level"] == "info"
    assert lines[1]["answer"] == 42 and lines[1]["password"] == "[redacted]"


async def test_unexpected_error_is_500_grouped_and_counted(backend: dict[str, Any]) -> None:
    async with with_boom(AppServer(make_settings(**backend))) as server, server.client() as client:
        await register(client, "Errol")
        await make_admin(server, "Errol")
        admin = bearer((await login(client, "errol"))["access_token"])
        first = await client.get("/api/test/boom")
        assert first.status_code == 500
        body = first.json()
        assert body == {"error": {"code": "internal_error", "message": "Something went wrong on our side.",
                                  "request_id": first.headers["x-request-id"]}}
        assert "kaboom" not in first.text and "Traceback" not in first.text
        listed = await client.get("/api/admin/errors", headers=admin)
        groups = (await assert_conforms(client, listed, "GET", "/api/admin/errors"))["groups"]
        assert len(groups) == 1 and groups[0]["count"] == 1
        assert groups[0]["error_type"] == "builtins.RuntimeError"
        assert groups[0]["location"].endswith("test_observability:boom")
        await client.get("/api/test/boom")
        groups = (await client.get("/api/admin/errors", headers=admin)).json()["groups"]
        assert len(groups) == 1 and groups[0]["count"] == 2

        report = await client.post("/api/errors", json={"message": "x is undefined", "type": "TypeError",
                                                         "source": "app.js:12", "url": "http://t/rooms"})
        assert report.status_code == 202
        fingerprint = (await assert_conforms(client, report, "POST", "/api/errors"))["fingerprint"]
        too_big = await client.post("/api/errors", content=b'{"message": "' + b"y" * 20000 + b'"}',
                                    headers={"content-type": "application/json"})
        assert too_big.status_code in (413, 422)
        client_groups = (await client.get("/api/admin/errors?source=client", headers=admin)).json()["groups"]
        assert [g["error_type"] for g in client_groups] == ["client.TypeError"]
        assert client_groups[0]["fingerprint"] == fingerprint
        assert client_groups[0]["sample"]["url"] == "http://t/rooms"

        # The cluster view on this backend (Redis heartbeats and cache state in scaled mode).
        stats = await assert_conforms(client, await client.get("/api/admin/stats", headers=admin),
                                      "GET", "/api/admin/stats")
        assert stats["replica_count"] == len(stats["replicas"]) >= 1


async def test_unexpected_error_logged_once(app_server: AppServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with_boom(app_server)
    async with app_server.client() as client:
        await client.get("/api/test/boom")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage()[:100] for r in errors]


async def test_alert_fires_once_then_again_after_cooldown(backend: dict[str, Any]) -> None:
    receiver = await HttpRecorder().start()
    settings = make_settings(ALERT_WEBHOOK_URLS=f"{receiver.url}/hook", ALERT_INTERVAL=0.2, ALERT_COOLDOWN=2,
                             ALERT_ERROR_COUNT=10, **backend)
    try:
        async with with_boom(AppServer(settings)) as server, server.client() as client:
            for _ in range(10):
                await client.get("/api/test/boom")
            await asyncio.sleep(0.6)
            early = [orjson.loads(body)["alert"]["rule"] for _, body, _ in receiver.requests]
            assert "error_burst" not in early, "ten errors are within the threshold"
            await client.get("/api/test/boom")  # the eleventh
            for _ in range(30):
                if receiver.requests:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.8)
            bursts = [orjson.loads(body) for _, body, _ in receiver.requests]
            burst_alerts = [b for b in bursts if b["alert"]["rule"] == "error_burst"]
            assert len(burst_alerts) == 1
            assert burst_alerts[0]["alert"]["status"] == "firing"
            assert "error_burst" in burst_alerts[0]["content"] and burst_alerts[0]["text"] == burst_alerts[0]["content"]

            started = time.monotonic()  # what five failing requests cost with the receiver up
            for _ in range(5):
                await client.get("/api/test/boom")
            baseline = time.monotonic() - started
            await receiver.stop()  # the receiver goes down: requests must not slow down
            started = time.monotonic()
            for _ in range(5):
                await client.get("/api/test/boom")
            assert time.monotonic() - started < 1.0 + 3 * baseline, baseline
            await receiver.start()
            await asyncio.sleep(2.5)  # past the cooldown, still over the threshold: fires again
            rules = [orjson.loads(body)["alert"]["rule"] for _, body, _ in receiver.requests]
            assert rules.count("error_burst") >= 2
    finally:
        await receiver.stop()


async def test_circuit_breaker_transitions() -> None:
    service = await HttpRecorder().start()
    service.status = 500
    metrics = Metrics()
    breakers = Breakers(BreakerPolicy(failure_threshold=3, reset_timeout=0.5, call_timeout=2), metrics=metrics)

    async def call() -> int:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{service.url}/thing")
            response.raise_for_status()
            return response.status_code

    try:
        for _ in range(3):
            with pytest.raises(httpx.HTTPStatusError):
                await breakers.call("svc", call)
        assert (await breakers.state("svc")).state == "open"
        hits = len(service.requests)
        started = time.perf_counter()
        with pytest.raises(CircuitOpen):
            await breakers.call("svc", call)
        assert time.perf_counter() - started < 0.05 and len(service.requests) == hits, "fails fast"
        await asyncio.sleep(0.6)
        with pytest.raises(httpx.HTTPStatusError):  # half-open trial fails: open again
            await breakers.call("svc", call)
        assert (await breakers.state("svc")).state == "open"
        await asyncio.sleep(0.6)
        service.status = 200
        assert await breakers.call("svc", call) == 200
        assert (await breakers.state("svc")).state == "closed"
    finally:
        await service.stop()
    text = metrics.render().decode()
    samples = {(s.labels.get("state")): s.value for f in text_string_to_metric_families(text)
               if f.name == "vonix_circuit_transitions" for s in f.samples if s.name.endswith("_total")}
    assert samples == {"open": 2.0, "half_open": 2.0, "closed": 1.0}


async def test_breaker_state_is_shared_across_replicas(redis_service: Any) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_service.url)
    await client.flushall()
    policy = BreakerPolicy(failure_threshold=2, reset_timeout=30, call_timeout=1)
    a, b = Breakers(policy, redis=client), Breakers(policy, redis=client)

    async def failing() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await a.call("push:example", failing)
    with pytest.raises(CircuitOpen):
        await b.call("push:example", failing)
    await client.aclose()


async def test_metrics_families_and_bounded_cardinality(backend: dict[str, Any]) -> None:
    async with with_boom(AppServer(make_settings(**backend))) as server, server.client() as client:
        await register(client, "Metra")
        token = (await login(client, "metra"))["access_token"]
        ws = await WsClient.connect(server.base_url, token)
        await ws.request("subscribe", channel="room:general")
        await ws.request("publish", channel="room:general", data={"text": "hi"})
        await ws.push("message")
        await client.get("/api/test/boom")
        await client.get("/api/auth/me")
        for n in range(1000):
            await client.get(f"/api/no/such/page/{n}")
        text = (await client.get("/metrics")).text
        await ws.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("vonix_http_requests", "vonix_http_request_duration_seconds", "vonix_ws_connections",
                 "vonix_ws_subscriptions", "vonix_ws_frames_in", "vonix_ws_messages_delivered",
                 "vonix_ws_publish_to_delivery_seconds", "vonix_ws_disconnects", "vonix_db_query_duration_seconds",
                 "vonix_db_pool_connections", "vonix_circuit_transitions", "vonix_errors",
                 "vonix_unexpected_errors", "vonix_maintenance_runs", "vonix_component_up",
                 "vonix_cache_requests", "vonix_cache_load_seconds", "vonix_cache_entries",
                 "vonix_ratelimit_decisions"):
        assert name in families, name
    routes = {s.labels["route"] for s in families["vonix_http_requests"].samples}
    assert len(routes) < 15 and "<unmatched>" in routes
    assert all(len({s.labels.get("route") for s in f.samples}) < 30 for f in families.values())
    errors = {s.labels["code"] for s in families["vonix_errors"].samples if s.name.endswith("_total")}
    assert {"not_found", "unauthorized"} <= errors


async def test_the_tasks_gauge_rises_with_connections_and_falls_back_when_they_leave(backend: dict[str, Any]) -> None:
    """`vonix_asyncio_tasks` counts the event loop's tasks: what the soak reads to show no task is
    left behind once its clients are gone (each websocket holds a few while it is open)."""
    async def tasks() -> float:
        text = (await client.get("/metrics")).text
        return next(sample.value for family in text_string_to_metric_families(text)
                    if family.name == "vonix_asyncio_tasks" for sample in family.samples)

    settings = make_settings(WS_MAX_CONNECTIONS_PER_USER=20, **backend)
    async with AppServer(settings) as server, server.client() as client:
        await register(client, "Tasker")
        token = (await login(client, "tasker"))["access_token"]
        before = await tasks()
        assert before > 0
        sockets = [await WsClient.connect(server.base_url, token) for _ in range(10)]
        for ws in sockets:
            await ws.request("subscribe", channel="room:general")
        during = await tasks()
        assert during >= before + 10, (before, during)
        for ws in sockets:
            await ws.close()
        deadline = time.monotonic() + 10
        while (after := await tasks()) > before + 2:
            assert time.monotonic() < deadline, (before, during, after)
            await asyncio.sleep(0.1)


async def test_one_trace_per_request_with_child_spans(scaled_backend: dict[str, Any]) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    collector = await HttpRecorder().start()
    settings = make_settings(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, **scaled_backend)
    try:
        async with AppServer(settings) as server, server.client() as client:
            await register(client, "Tracy")
            token = (await login(client, "tracy"))["access_token"]
            collector.requests.clear()
            response = await client.post("/api/channels/room:general/messages", json={"data": {"text": "traced"}},
                                         headers={**bearer(token), "X-Request-ID": "trace-me"})
            assert response.status_code == 201
        # leaving the server flushed the exporter
        spans = []
        for path, body, _ in collector.requests:
            assert path == "/v1/traces"
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    spans.extend(scope_spans.spans)
        roots = [s for s in spans if any(a.key == "vonix.request_id" and a.value.string_value == "trace-me"
                                         for a in s.attributes)]
        assert len(roots) == 1
        root = roots[0]
        assert root.name == "POST /api/channels/{channel}/messages"
        trace = [s for s in spans if s.trace_id == root.trace_id]
        by_id = {s.span_id: s for s in trace}
        names = {s.name for s in trace}
        assert "realtime publish" in names
        assert any(n.startswith("db ") for n in names)
        assert any(n.upper().startswith(("EVALSHA", "EVAL")) for n in names), names
        for span in trace:
            if span is root:
                continue
            parent = span
            while parent.parent_span_id:
                parent = by_id[parent.parent_span_id]
            assert parent is root, f"{span.name} is not under the request span"
    finally:
        await collector.stop()
