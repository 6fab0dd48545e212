"""Refusals over gRPC: each HTTP status the chain answers with becomes the gRPC code clients expect."""

from __future__ import annotations

import grpc
import pytest

from costwarden.app.grpc_forward import HTTP_OF
from costwarden.app.grpc_server import code_of


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (404, grpc.StatusCode.NOT_FOUND),
        (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),  # budgets and rate limits
        (501, grpc.StatusCode.UNIMPLEMENTED),
        (502, grpc.StatusCode.UNAVAILABLE),
        (504, grpc.StatusCode.DEADLINE_EXCEEDED),
        (418, grpc.StatusCode.INVALID_ARGUMENT),
        (599, grpc.StatusCode.UNKNOWN),
    ],
)
def test_status_to_code(status: int, code: grpc.StatusCode) -> None:
    assert code_of(status) is code


@pytest.mark.parametrize("code", [c for c in HTTP_OF if HTTP_OF[c] < 500])
def test_an_upstreams_refusal_keeps_its_kind(code: grpc.StatusCode) -> None:
    """An upstream's client-side refusal reaches the client as a client-side refusal."""
    assert code_of(HTTP_OF[code]) in HTTP_OF and HTTP_OF[code_of(HTTP_OF[code])] == HTTP_OF[code]
