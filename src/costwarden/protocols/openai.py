"""OpenAI-compatible wire format: request parsing, upstream rewrite, usage, error bodies."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson

from costwarden.domain.usage import Usage
from costwarden.protocols.errors import GatewayError

ENDPOINTS = (
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/images/generations",
    "/v1/audio/transcriptions", "/v1/audio/translations", "/v1/audio/speech", "/v1/rerank",
)  # fmt: skip
STREAMABLE = ("/v1/chat/completions", "/v1/completions", "/v1/responses")
CACHEABLE = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")  # stateless: the Responses API is not
RESPONSES = "/v1/responses"  # its stream carries usage on its last event: no `stream_options` to add
# OpenAI endpoints that take no prompt and generate no tokens: admission holds none for them.
TOKENLESS = frozenset((
    "/v1/models", "/v1/responses/{id}", "/v1/images/generations", "/v1/audio/transcriptions",
    "/v1/audio/translations", "/v1/audio/speech", "/v1/rerank",
))  # fmt: skip
MAX_TOKENS_PARAM = 2**31 - 1  # no model generates more in one choice
MAX_CHOICES = 128  # OpenAI's documented maximum of `n`
# Upstream usage beyond these is implausible for the request that was sent (see plausible_usage).
UNBOUNDED_OUTPUT = 2**24  # per choice, when the request sets no max_tokens: above any context window
MEDIA_PART_TOKENS = 2**24  # per non-text content part (image, audio, file): its tokens are not in the body
TEMPLATE_TOKENS = 4096  # chat templates and tool instructions the server adds to the prompt


@dataclass(slots=True)
class OpenAIRequest:
    """The parts of a client's request the gateway acts on; `body` is the parsed JSON object."""

    model: str
    stream: bool
    client_wants_usage: bool
    body: dict[str, Any]


def parse_request(raw: bytes, endpoint: str) -> OpenAIRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise GatewayError(400, "invalid_json", "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "missing_model", "the request must name a `model` (a string)")
    _check_counts(body)
    stream = body.get("stream", False) is True and endpoint in STREAMABLE
    options = body.get("stream_options")
    wants_usage = endpoint == RESPONSES or (isinstance(options, dict) and options.get("include_usage") is True)
    return OpenAIRequest(model=model, stream=stream, client_wants_usage=wants_usage, body=body)


_COUNTS = (
    ("max_tokens", 0, MAX_TOKENS_PARAM),
    ("max_completion_tokens", 0, MAX_TOKENS_PARAM),
    ("max_output_tokens", 0, MAX_TOKENS_PARAM),  # the Responses API's
    ("n", 1, MAX_CHOICES),
)


def _check_counts(body: dict[str, Any]) -> None:
    """The request's own counts must be integers in range: they bound admission and plausible usage."""
    for name, low, high in _COUNTS:
        value = body.get(name)
        if value is None:
            continue
        integral = isinstance(value, float) and value.is_integer()  # 1.0: pydantic servers take it
        if (not isinstance(value, int) or isinstance(value, bool)) and not integral:
            raise GatewayError(400, "invalid_type", f"`{name}` must be an integer, not {_shown(value)}")
        if not low <= value <= high:
            raise GatewayError(400, "integer_out_of_range", f"`{name}` is {value}; it must be between {low} and {high}")


def _shown(value: object) -> str:
    """A client's value, briefly: repr() of a deeply nested array would recurse, of a huge string copy it."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    return repr(value)


def upstream_body(request: OpenAIRequest, raw: bytes, upstream_model: str) -> bytes:
    """The body to send upstream: the raw bytes unless the model or stream options must change."""
    if upstream_model == request.model and (not request.stream or request.client_wants_usage):
        return raw
    body = dict(request.body)
    body["model"] = upstream_model
    if request.stream:
        options = body.get("stream_options")
        merged = dict(options) if isinstance(options, dict) else {}
        merged["include_usage"] = True
        body["stream_options"] = merged
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:  # orjson reads 1024 levels of nesting but writes only 254
        raise GatewayError(
            400, "nesting_too_deep", "the request body nests arrays or objects too deeply (at most 254 levels)"
        ) from exc


def usage_from(obj: Any) -> Usage | None:
    """Usage from a response or chunk object's `usage` field; None if absent or null."""
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
    return Usage(
        input_tokens=count(usage.get("prompt_tokens")),
        output_tokens=count(usage.get("completion_tokens")),
        cached_tokens=count(cached),
    )


def count(value: Any) -> int:
    """A count as an int; 12.0 and 1e17 (floats some servers send) count, plausibility bounds them later."""
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def plausible_usage(usage: Usage, body: dict[str, Any], body_bytes: int) -> tuple[Usage, list[str]]:
    """Usage bounded by what the request could have used, and the fields that were over their bound.

    Input: at most one token per byte of the request body, plus the chat template and, per image,
    audio or file part, the most tokens such a part can be. Output: at most `max_tokens` per
    choice (UNBOUNDED_OUTPUT without one). Cached: at most the input. Deliberately generous: it
    catches an upstream's absurd numbers (10^17 tokens), not a tokenizer's rounding.
    """
    input_bound = body_bytes + TEMPLATE_TOKENS + MEDIA_PART_TOKENS * _media_parts(body)
    output_bound = max_output_tokens(body)
    if output_bound is None:
        n = body.get("n")
        output_bound = UNBOUNDED_OUTPUT * (n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1)
    over: list[str] = []
    input_tokens = _bounded("prompt_tokens", usage.input_tokens, input_bound, over)
    output_tokens = _bounded("completion_tokens", usage.output_tokens, output_bound, over)
    cached_tokens = _bounded("cached_tokens", usage.cached_tokens, input_tokens, over)
    reasoning_tokens = _bounded("reasoning_tokens", usage.reasoning_tokens, output_tokens, over)
    if not over:
        return usage, over
    bounded = replace(
        usage,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        reasoning_tokens=reasoning_tokens,
    )
    return bounded, over


def _bounded(name: str, value: int, bound: int, over: list[str]) -> int:
    if value <= bound:
        return value
    over.append(f"{name}={value} > {bound}")
    return bound


def _media_parts(body: dict[str, Any]) -> int:
    """Content parts whose tokens do not come from the body's bytes (image_url, input_audio, file)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    count = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            count += sum(1 for part in content if isinstance(part, dict) and part.get("type") not in ("text", None))
    return count


def error_body(message: str, kind: str, code: str | None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "code": code, "param": None}})


def models_body(names: list[str], created: int) -> bytes:
    data = [_model(n, created) for n in names]
    return orjson.dumps({"object": "list", "data": data})


def model_body(name: str, created: int) -> bytes:
    """`GET /v1/models/{id}`: one model object."""
    return orjson.dumps(_model(name, created))


def _model(name: str, created: int) -> dict[str, object]:
    return {"id": name, "object": "model", "created": created, "owned_by": "costwarden"}


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a dict, or {} (the route stage has already refused invalid bodies)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


_PER_MESSAGE_TOKENS = 8


def input_token_bound(body: dict[str, Any]) -> int:
    """An upper bound on the prompt's tokens: one per UTF-8 byte of its text, plus a few per message.

    No tokenizer yields more tokens than bytes, so this never under-estimates; it is coarse, which
    only makes admission more careful near a budget's limit.
    """
    total = 0
    for field_name in ("messages", "prompt", "input", "instructions"):
        total += _text_bytes(body.get(field_name))
    messages = body.get("messages")
    if isinstance(messages, list):
        total += _PER_MESSAGE_TOKENS * len(messages)
    return total


_TEXT_KEYS = ("content", "text", "name", "arguments")


def _text_bytes(value: Any) -> int:
    """UTF-8 bytes of the text in `value`, walked with a stack: a client's nesting is not our recursion."""
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item.encode())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(v for k, v in item.items() if k in _TEXT_KEYS)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += 1  # a token id in a pre-tokenised prompt
    return total


def max_output_tokens(body: dict[str, Any]) -> int | None:
    """`max_completion_tokens`, `max_tokens` or `max_output_tokens` (Responses) times `n`; None
    when the output is not bounded."""
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            choices = body.get("n")
            n = choices if isinstance(choices, int) and not isinstance(choices, bool) and choices > 0 else 1
            return value * n
    return None
