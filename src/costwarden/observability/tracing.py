"""OpenTelemetry traces (the `otel` extra): a span per request and a child span for its upstream call.

A chain stage, imported only when `observability.tracing.enabled` (so a gateway without traces
never imports OpenTelemetry). It creates no span while the request runs: at settlement it writes
both spans with their measured start and end times, so the request path pays nothing until the
outcome is known. A client's W3C `traceparent` makes the gateway's span its child.
"""

from __future__ import annotations

import time

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import PassStage
from costwarden.config.observability import TracingConfig
from costwarden.domain.money import usd_text
from costwarden.domain.record import Outcome

PROPAGATOR = TraceContextTextMapPropagator()
NS = 1_000_000_000


def provider(config: TracingConfig, exporter: SpanExporter | None = None) -> TracerProvider:
    """A tracer provider exporting over OTLP/HTTP to `config.endpoint` (or to `exporter`)."""
    made = TracerProvider(
        resource=Resource.create({"service.name": config.service_name}),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    processor: SpanProcessor = BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=config.endpoint))
    made.add_span_processor(processor)
    return made


def attributes(exchange: Exchange) -> dict[str, AttributeValue]:
    """The request's id, attribution, outcome, usage and cost: never the key, tags or bodies."""
    identity = exchange.identity
    found: dict[str, AttributeValue] = {
        "costwarden.request_id": exchange.request_id,
        "costwarden.outcome": exchange.outcome.value,
        "costwarden.cost_usd": usd_text(exchange.cost),
        "costwarden.protocol": exchange.protocol.value,
        "http.request.method": exchange.method,
        "url.path": exchange.endpoint,
        "http.response.status_code": exchange.status,
    }
    if identity is not None:
        found["costwarden.team"] = identity.team
        found["costwarden.project"] = identity.project
        found["costwarden.environment"] = identity.environment
    if exchange.deployment_name is not None:
        found["costwarden.deployment"] = exchange.deployment_name
    if exchange.model is not None:
        found["gen_ai.request.model"] = exchange.model
    usage = exchange.usage
    if usage.input_tokens or usage.output_tokens:
        found["gen_ai.usage.input_tokens"] = usage.input_tokens
        found["gen_ai.usage.output_tokens"] = usage.output_tokens
    if exchange.error is not None:
        found["error.type"] = exchange.error.code
    return found


class Trace(PassStage):
    """The last stage before forwarding: notes when forwarding starts; writes the spans at settle."""

    name = "trace"

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._forwarded: dict[str, float] = {}  # request id -> perf_counter when forwarding began

    async def enter(self, exchange: Exchange) -> None:
        self._forwarded[exchange.request_id] = time.perf_counter()

    async def settle(self, exchange: Exchange) -> None:
        forwarded = self._forwarded.pop(exchange.request_id, None)
        start_ns = int(exchange.started_at * NS)
        end_ns = start_ns + int(exchange.latency_ms * 1_000_000)
        headers = {}
        for name in (b"traceparent", b"tracestate"):
            value = exchange.header(name)
            if value is not None:
                headers[name.decode()] = value.decode("latin-1")
        parent: Context | None = PROPAGATOR.extract(headers) if headers else None
        span = self._tracer.start_span(
            f"{exchange.method} {exchange.endpoint}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=start_ns,
            attributes=attributes(exchange),
        )
        if exchange.outcome is Outcome.FAILED or exchange.status >= 500:
            span.set_status(Status(StatusCode.ERROR, exchange.error.code if exchange.error else None))
        if forwarded is not None and exchange.upstream_seconds is not None:
            upstream_start = start_ns + int((forwarded - exchange.started_perf) * NS)
            child = self._tracer.start_span(
                f"upstream {exchange.deployment_name or ''}".rstrip(),
                context=set_span_in_context(span),
                kind=SpanKind.CLIENT,
                start_time=upstream_start,
                attributes={
                    "costwarden.request_id": exchange.request_id,
                    "costwarden.deployment": exchange.deployment_name or "",
                    "http.response.status_code": exchange.upstream_status or 0,
                },
            )
            if exchange.outcome is Outcome.FAILED:
                child.set_status(Status(StatusCode.ERROR))
            child.end(end_time=min(upstream_start + int(exchange.upstream_seconds * NS), end_ns))
        span.end(end_time=end_ns)
