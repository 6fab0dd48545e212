"""A request the gateway refuses or cannot complete, with the HTTP status and a stable code."""

from __future__ import annotations

# OpenAI's error `type` for a missing, unknown or revoked key (its code then says which).
UNAUTHENTICATED = "invalid_request_error"


class GatewayError(Exception):
    """Raised by any stage; rendered in the protocol's own error shape by the protocol codec.

    `kind` is OpenAI's error `type` (e.g. `invalid_request_error`); `code` is a stable machine
    code stored in the ledger (e.g. `invalid_api_key`, `upstream_timeout`).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        kind: str = "invalid_request_error",
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.kind = kind
        self.headers = headers

    @property
    def is_upstream_fault(self) -> bool:
        return self.status in (502, 503, 504)
