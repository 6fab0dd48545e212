"""Upstream answers recast for the client: JSON that must parse, 4xx bodies in the caller's shape."""

from __future__ import annotations

import orjson
import pytest

from costwarden.domain.record import Protocol
from costwarden.protocols.upstream_reply import client_error, openai_shaped, well_formed


@pytest.mark.parametrize(
    ("protocol", "endpoint", "body", "ok"),
    [
        (Protocol.OPENAI, "/v1/chat/completions", b'{"id": "x"}', True),
        (Protocol.OPENAI, "/v1/chat/completions", b"<html>502 Bad Gateway</html>", False),
        (Protocol.OPENAI, "/v1/chat/completions", b"", False),
        (Protocol.OPENAI, "/v1/embeddings", b"[1, 2]", False),  # JSON, but not an object
        (Protocol.V2, "/v2/infer", b'{"outputs": []}', True),
        (Protocol.V2, "/v2/infer", b"OK", False),
        (Protocol.V2, "/v2/models", b"", True),  # a ready answer may be empty
        (Protocol.V2, "/v2/models", b'{"name": "iris"}', True),
        (Protocol.V2, "/v2/models", b"<html>", False),
        (Protocol.HTTP, "/proxy", b"<html>anything</html>", True),  # passthrough: not ours to judge
    ],
)
def test_well_formed(protocol: Protocol, endpoint: str, body: bytes, ok: bool) -> None:
    assert well_formed(protocol, endpoint, body) is ok


@pytest.mark.parametrize(
    ("endpoint", "content_type", "ok"),
    [
        ("/v1/audio/transcriptions", "text/plain", True),  # response_format text, srt, vtt
        ("/v1/audio/translations", "text/plain", True),
        ("/v1/audio/transcriptions", "text/event-stream", True),  # stream: true
        ("/v1/audio/transcriptions", "application/octet-stream", False),
        ("/v1/chat/completions", "text/plain", False),  # only a transcript may be text
        ("/v1/images/generations", "text/event-stream", False),
    ],
)
def test_a_transcript_may_be_text(endpoint: str, content_type: str, ok: bool) -> None:
    assert openai_shaped(endpoint, None, content_type) is ok


def test_openai_errors_pass_unchanged() -> None:
    body = orjson.dumps({"error": {"message": "bad temperature", "type": "invalid_request_error"}})
    assert client_error(Protocol.OPENAI, 400, body) is None


def test_a_foreign_4xx_becomes_an_openai_error() -> None:
    recast = client_error(Protocol.OPENAI, 404, b"<html><body>nginx at 10.0.0.7</body></html>")
    assert recast is not None
    error = orjson.loads(recast)["error"]
    assert error["code"] == "upstream_404" and error["type"] == "invalid_request_error"
    assert "nginx" not in error["message"] and "404" in error["message"]


def test_a_fastapi_detail_becomes_the_openai_message() -> None:
    recast = client_error(Protocol.OPENAI, 422, orjson.dumps({"detail": "Model not found"}))
    assert recast is not None and orjson.loads(recast)["error"]["message"] == "Model not found"


def test_v2_error_passes_unchanged() -> None:
    assert client_error(Protocol.V2, 400, orjson.dumps({"error": "shape mismatch"})) is None


def test_mlserver_validation_detail_becomes_a_v2_error() -> None:
    detail = {
        "detail": [
            {"type": "list_type", "loc": ["body", "inputs", 0, "data"], "msg": "Input should be a valid list"},
            {"type": "missing", "loc": ["body", "inputs", 0, "name"], "msg": "Field required"},
        ]
    }
    recast = client_error(Protocol.V2, 422, orjson.dumps(detail))
    assert recast is not None
    assert orjson.loads(recast) == {
        "error": "body.inputs.0.data: Input should be a valid list; body.inputs.0.name: Field required"
    }


@pytest.mark.parametrize("body", [b"Not Found", b"", b"[]", b'{"detail": 3}', b'{"other": "x"}'])
def test_anything_else_becomes_a_plain_v2_error(body: bytes) -> None:
    recast = client_error(Protocol.V2, 404, body)
    assert recast is not None and orjson.loads(recast) == {"error": "the upstream refused the request (HTTP 404)"}


def test_a_long_message_is_cut() -> None:
    recast = client_error(Protocol.V2, 400, orjson.dumps({"detail": "x" * 5000}))
    assert recast is not None and len(orjson.loads(recast)["error"]) == 500


def test_passthrough_bodies_are_left_alone() -> None:
    assert client_error(Protocol.HTTP, 404, b"<html>") is None
