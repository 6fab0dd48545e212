"""The trace stage: a server span per request with its id and attribution, a client child span for
the upstream call inside it, the client's traceparent honoured; nothing for a refused request's upstream."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from costwarden.chain.exchange import Exchange
from costwarden.config.observability import TracingConfig
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Outcome, Protocol
from costwarden.domain.usage import Usage
from costwarden.observability.tracing import Trace, provider
from costwarden.protocols.errors import GatewayError

CHAT = "/v1/chat/completions"
PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{PARENT_TRACE}-00f067aa0ba902b7-01"


def exchange(headers: list[tuple[bytes, bytes]] | None = None) -> Exchange:
    ex = Exchange("req-1", "POST", CHAT, b"", headers or [], b"{}", Protocol.OPENAI, CHAT)
    ex.identity = KeyIdentity("key-1", "search", "ranking", "prod")
    ex.model = "chat"
    return ex


def traced() -> tuple[Trace, InMemorySpanExporter, TracerProvider]:
    spans = InMemorySpanExporter()
    made = provider(TracingConfig(enabled=True), exporter=spans)
    return Trace(made.get_tracer("test")), spans, made


async def test_a_served_request_has_a_server_span_and_an_upstream_child_within_it() -> None:
    stage, spans, made = traced()
    ex = exchange([(b"traceparent", TRACEPARENT.encode()), (b"authorization", b"Bearer cw_secret")])
    await stage.enter(ex)
    await asyncio.sleep(0.01)
    ex.status, ex.upstream_status, ex.upstream_seconds = 200, 200, 0.008
    ex.usage, ex.cost, ex.latency_ms = Usage(input_tokens=12, output_tokens=3), Decimal("0.000012"), 12.0
    await stage.settle(ex)
    made.force_flush()
    server, child = sorted(spans.get_finished_spans(), key=lambda s: s.kind != SpanKind.SERVER)
    assert server.kind is SpanKind.SERVER and child.kind is SpanKind.CLIENT
    assert server.name == "POST /v1/chat/completions" and child.name == "upstream"
    assert child.parent is not None and child.parent.span_id == server.context.span_id
    assert format(server.context.trace_id, "032x") == PARENT_TRACE  # the client's trace continues
    attrs = dict(server.attributes or {})
    assert attrs["costwarden.request_id"] == "req-1" and attrs["costwarden.team"] == "search"
    assert attrs["costwarden.project"] == "ranking" and attrs["costwarden.environment"] == "prod"
    assert attrs["costwarden.cost_usd"] == "0.000012000" and attrs["gen_ai.usage.input_tokens"] == 12
    assert not any("cw_secret" in str(v) for v in attrs.values()) and "key-1" not in attrs.values()
    assert server.start_time is not None and server.end_time is not None
    assert child.start_time is not None and child.end_time is not None
    assert server.start_time <= child.start_time <= child.end_time <= server.end_time
    assert server.end_time - server.start_time == 12_000_000
    assert server.status.status_code is StatusCode.UNSET


async def test_a_refused_request_has_only_the_server_span_marked_by_outcome() -> None:
    stage, spans, made = traced()
    ex = exchange()
    ex.reject(GatewayError(502, "upstream_error", "boom", kind="upstream_error"))
    ex.latency_ms = 1.0
    await stage.settle(ex)  # refused before forwarding: enter never ran
    made.force_flush()
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and dict(span.attributes or {})["error.type"] == "upstream_error"
    assert ex.outcome is Outcome.FAILED and span.parent is None
