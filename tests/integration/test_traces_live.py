"""A gateway with `observability.tracing` on exports its spans over OTLP/HTTP to a receiver on
loopback: a server span per request with its id and attribution, the upstream call as its child."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.integration.conftest import GatewayFactory
from tests.integration.setup_config import KEYS


class Receiver:
    """An OTLP/HTTP trace receiver (protobuf), keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        received.extend(scope.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


def attributes(span: Any) -> dict[str, Any]:
    values = {}
    for item in span.attributes:
        value = item.value
        values[item.key] = value.string_value if value.HasField("string_value") else value.int_value
    return values


def test_spans_reach_an_otlp_receiver(on_engines: GatewayFactory, receiver: Receiver) -> None:
    tracing = {"enabled": True, "endpoint": receiver.url, "service_name": "cw-test"}
    gateway = on_engines(extra={"observability": {"tracing": tracing}})
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    auth = {"Authorization": f"Bearer {KEYS['ads']}"}
    served = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=auth, timeout=30)
    refused = httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)
    assert served.status_code == 200 and refused.status_code == 401
    request_id = served.headers["x-costwarden-request-id"]
    deadline = time.monotonic() + 20  # the batch processor exports every 5 s
    while len(receiver.spans) < 3:
        assert time.monotonic() < deadline, receiver.spans
        time.sleep(0.2)
    by_id: dict[str, list[Any]] = {}
    for span in receiver.spans:
        by_id.setdefault(attributes(span)["costwarden.request_id"], []).append(span)
    server, child = sorted(by_id[request_id], key=lambda s: s.kind)  # SERVER = 2, CLIENT = 3
    assert attributes(server)["costwarden.team"] == "ads" and attributes(server)["costwarden.deployment"] == "chat"
    assert attributes(server)["costwarden.cost_usd"] == served.headers["x-costwarden-cost-usd"]
    assert child.parent_span_id == server.span_id and child.trace_id == server.trace_id
    assert server.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano
    assert child.end_time_unix_nano <= server.end_time_unix_nano
    (alone,) = by_id[refused.headers["x-costwarden-request-id"]]
    assert attributes(alone)["http.response.status_code"] == 401 and "costwarden.team" not in attributes(alone)
