"""OpenAI-shaped errors: the exception handlers raise, and the JSON body it becomes."""

from __future__ import annotations

import orjson

# OpenAI's error type (and code) per HTTP status, for the statuses a client is likely to meet.
_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", None),
    405: ("invalid_request_error", None),
    413: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}


class ApiError(Exception):
    """An error answer: HTTP status plus OpenAI's {"error": {...}} fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        default_type, default_code = _KINDS.get(status, ("server_error", None))
        self.status = status
        self.message = message
        self.type = type_ or default_type
        self.code = code or default_code
        self.param = param

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return orjson.dumps({"error": error})


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 invalid_request_error."""
    return ApiError(400, message, param=param, code=code)


def missing(param: str) -> ApiError:
    """A 400 for a required parameter that is absent, worded as OpenAI words it."""
    return invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def injected(status: int) -> ApiError:
    """The error a fault-injection model name asks for."""
    if status == 429:
        message = "Rate limit reached for requests (injected by the example server)."
    elif status >= 500:
        message = "The server had an error while processing your request. Sorry about that!"
    else:
        message = f"Injected error {status}."
    return ApiError(status, message)


class HtmlPage(Exception):
    """An answer that is not the API's at all: an HTML page, as a proxy or load balancer sends."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status

    def body(self) -> str:
        return f"<html><body><h1>{self.status}</h1><p>nginx at 10.0.0.7:8080</p></body></html>"
