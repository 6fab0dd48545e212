"""Which request headers reach the upstream: the API's own for OpenAI and V2, all but a deny-list
for a passthrough; never credentials, cookies, hop-by-hop or the gateway's own headers."""

from __future__ import annotations

import pytest

from costwarden.chain.exchange import Exchange
from costwarden.domain.record import Protocol
from costwarden.upstream.headers import upstream_headers

NEVER = [
    (b"authorization", b"Bearer cw_client_key"),
    (b"x-api-key", b"cw_client_key"),
    (b"api-key", b"azure-key"),
    (b"cookie", b"session=1"),
    (b"proxy-authorization", b"Basic eA=="),
    (b"connection", b"keep-alive, x-hop"),
    (b"x-hop", b"named in connection"),
    (b"keep-alive", b"timeout=5"),
    (b"te", b"trailers"),
    (b"trailer", b"x-sum"),
    (b"upgrade", b"h2c"),
    (b"transfer-encoding", b"chunked"),
    (b"content-length", b"12"),
    (b"host", b"gateway"),
    (b"expect", b"100-continue"),
    (b"x-costwarden-tags", b"a=b"),
    (b"x-costwarden-whatever", b"c"),
    (b"x-forwarded-for", b"10.0.0.1"),
    (b"forwarded", b"for=10.0.0.1"),
    (b"accept-encoding", b"gzip"),
]
KEPT = [
    (b"content-type", b"application/json; charset=utf-8"),
    (b"accept", b"text/event-stream"),
    (b"user-agent", b"OpenAI/Python 1.0"),
    (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
]


def exchange(protocol: Protocol, headers: list[tuple[bytes, bytes]]) -> Exchange:
    return Exchange("rid-1", "POST", "/x", b"", headers, b"", protocol, "/x")


@pytest.mark.parametrize("protocol", list(Protocol))
def test_never_forwarded_whatever_the_protocol(protocol: Protocol) -> None:
    out = upstream_headers(exchange(protocol, [*NEVER, *KEPT]), None)
    assert {k: v for k, v in out.items()} == {
        **{k.decode(): v.decode() for k, v in KEPT},
        "accept-encoding": "identity",
        "x-request-id": "rid-1",
        "x-costwarden-request-id": "rid-1",
    }


def test_the_deployment_key_is_the_only_authorization() -> None:
    out = upstream_headers(exchange(Protocol.OPENAI, NEVER), "sk-upstream")
    assert out["authorization"] == "Bearer sk-upstream"
    assert "cw_client_key" not in str(out)


def test_api_protocols_forward_only_what_their_api_reads() -> None:
    custom = [(b"x-custom", b"1"), (b"openai-organization", b"org-1"), (b"inference-header-content-length", b"40")]
    for protocol in (Protocol.OPENAI, Protocol.V2):
        out = upstream_headers(exchange(protocol, custom), None)
        assert "x-custom" not in out
        assert out["openai-organization"] == "org-1" and out["inference-header-content-length"] == "40"
    assert upstream_headers(exchange(Protocol.HTTP, custom), None)["x-custom"] == "1"  # a passthrough keeps it


def test_no_content_type_is_invented() -> None:
    assert "content-type" not in upstream_headers(exchange(Protocol.OPENAI, []), None)


def test_repeated_fields_are_combined_not_lost() -> None:
    out = upstream_headers(exchange(Protocol.HTTP, [(b"x-a", b"1"), (b"x-a", b"2")]), None)
    assert out["x-a"] == "1, 2"


@pytest.mark.parametrize("protocol", list(Protocol))
def test_the_clients_request_id_goes_upstream_unchanged(protocol: Protocol) -> None:
    out = upstream_headers(exchange(protocol, [(b"x-request-id", b"trace-42/client")]), None)
    assert out["x-request-id"] == "trace-42/client"
    assert out["x-costwarden-request-id"] == "rid-1"  # the gateway's own id, in its own header


def test_a_v2_body_keeps_its_content_encoding_and_an_openai_body_does_not() -> None:
    sent = [(b"content-encoding", b"gzip")]
    assert upstream_headers(exchange(Protocol.V2, sent), None)["content-encoding"] == "gzip"
    assert upstream_headers(exchange(Protocol.HTTP, sent), None)["content-encoding"] == "gzip"
    # OpenAI bodies are decoded by the gateway (and rewritten by the route stage): sent plain.
    assert "content-encoding" not in upstream_headers(exchange(Protocol.OPENAI, sent), None)
