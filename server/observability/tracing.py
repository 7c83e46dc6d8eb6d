"""OpenTelemetry tracing: spans for HTTP requests, database statements, Redis calls and publishes.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set, and then truly off: no tracer provider, no
middleware, `tracer` stays None and the instrumented paths skip span creation entirely. When on,
spans go to `<endpoint>/v1/traces` over OTLP/HTTP in batches (Jaeger in docker-compose).
"""

from __future__ import annotations

from typing import Any

from server.observability.logging import get_logger

log = get_logger("vonix.tracing")


class Tracing:
    def __init__(self, settings: Any) -> None:
        self.endpoint = settings.otel_exporter_otlp_endpoint
        self.service = settings.otel_service_name
        self.instance = settings.instance_id
        self.provider: Any = None
        self.tracer: Any = None
        self._redis_instrumentor: Any = None
        if self.enabled:
            self._build()

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint)

    def _build(self) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": self.service, "service.instance.id": self.instance})
        self.provider = TracerProvider(resource=resource)
        exporter = OTLPSpanExporter(endpoint=f"{self.endpoint.rstrip('/')}/v1/traces", timeout=5)
        self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        self.tracer = self.provider.get_tracer("vonix")

    def start(self) -> None:
        if not self.enabled:
            return
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        instrumentor = RedisInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=self.provider)
            self._redis_instrumentor = instrumentor
        log.info("tracing_on", endpoint=self.endpoint)

    def shutdown(self) -> None:
        if self.provider is None:
            return
        if self._redis_instrumentor is not None:
            self._redis_instrumentor.uninstrument()
        self.provider.force_flush(5000)
        self.provider.shutdown()
