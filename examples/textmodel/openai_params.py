"""Parses and validates OpenAI request bodies into plain values (sans-I/O).

Raises ApiError (400) for malformed JSON, missing fields and values of the wrong type or range.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from api_error import ApiError, invalid, missing
from embeddings import DIMENSIONS
from generation import Sampling
from tokenizer import count_tokens

DEFAULT_MAX_TOKENS = 64
MAX_TOKENS_LIMIT = 8192
MESSAGE_OVERHEAD_TOKENS = 3  # per chat message, as OpenAI counts role and separators

Body = dict[str, object]


@dataclass(frozen=True, slots=True)
class TextRequest:
    """A chat or text completion request. Chat has one prompt: the flattened conversation."""

    model: str
    prompts: tuple[str, ...]
    prompt_tokens: int  # over all prompts, overhead included
    sampling: Sampling
    n: int
    stream: bool
    include_usage: bool
    echo: bool


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    inputs: tuple[str, ...]
    base64: bool
    dimensions: int


def parse_body(raw: bytes) -> Body:
    """The JSON object of a request body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you"
            " aren't using your HTTP library correctly. The OpenAI API expects a JSON payload,"
            " but what was sent was not valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def parse_chat(body: Body) -> TextRequest:
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("Invalid 'messages': expected a non-empty array.", "messages", "invalid_value")
    lines: list[str] = []
    tokens = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise invalid(f"Invalid 'messages[{i}]': expected an object with a 'role'.", "messages")
        text = _message_text(message.get("content"), i)
        tokens += count_tokens(text) + MESSAGE_OVERHEAD_TOKENS
        lines.append(f"{message['role']}: {text}")
    max_tokens = _optional_int(body, "max_completion_tokens", 1, MAX_TOKENS_LIMIT)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", DEFAULT_MAX_TOKENS, 1, MAX_TOKENS_LIMIT)
    return _text_request(body, ("\n".join(lines),), tokens, max_tokens, echo=False)


def parse_completion(body: Body) -> TextRequest:
    prompt = body.get("prompt")
    if prompt is None:
        raise missing("prompt")
    prompts = _strings(prompt, "prompt")
    tokens = sum(count_tokens(p) for p in prompts)
    max_tokens = _int(body, "max_tokens", DEFAULT_MAX_TOKENS, 1, MAX_TOKENS_LIMIT)
    echo = _bool(body, "echo")
    return _text_request(body, prompts, tokens, max_tokens, echo=echo)


def parse_embedding(body: Body) -> EmbeddingRequest:
    model = _model(body)
    raw_input = body.get("input")
    if raw_input is None:
        raise missing("input")
    inputs = _strings(raw_input, "input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise invalid("Invalid 'encoding_format': expected 'float' or 'base64'.", "encoding_format")
    dimensions = _int(body, "dimensions", DIMENSIONS, 1, DIMENSIONS)
    return EmbeddingRequest(model, inputs, encoding == "base64", dimensions)


def _text_request(body: Body, prompts: tuple[str, ...], tokens: int, max_tokens: int, *, echo: bool) -> TextRequest:
    model = _model(body)
    stream = _bool(body, "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
                "invalid_value",
            )
        if not isinstance(options, dict):
            raise invalid("Invalid 'stream_options': expected an object.", "stream_options")
        include_usage = _bool(options, "include_usage")
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    sampling = Sampling(
        max_tokens=max_tokens,
        temperature=temperature,
        stop=_stop(body.get("stop")),
        seed=_optional_int(body, "seed", -(2**63), 2**63 - 1),
        ignore_eos=_bool(body, "ignore_eos"),
    )
    n = _int(body, "n", 1, 1, 128)
    return TextRequest(model, prompts, tokens, sampling, n, stream, include_usage, echo)


def _model(body: Body) -> str:
    model = body.get("model")
    if model is None:
        raise missing("model")
    if not isinstance(model, str) or not model:
        raise invalid("Invalid 'model': expected a non-empty string.", "model", "invalid_type")
    return model


def _message_text(content: object, index: int) -> str:
    """The text of a message: a string, or the text parts of a content array (others count 0)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return " ".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise invalid(f"Invalid 'messages[{index}].content': expected a string or an array.")


def _strings(value: object, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(str(v) for v in value)
    raise invalid(f"Invalid '{name}': expected a string or a non-empty array of strings.", name, "invalid_type")


def _stop(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and len(value) <= 4 and all(isinstance(v, str) for v in value):
        return tuple(str(v) for v in value)
    raise invalid("Invalid 'stop': expected a string or an array of up to 4 strings.", "stop")


def _bool(body: Body, name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _wrong_type(name, "a boolean", value)
    return value


def _int(body: Body, name: str, default: int, low: int, high: int) -> int:
    value = _optional_int(body, name, low, high)
    return default if value is None else value


def _optional_int(body: Body, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(name, "an integer", value)
    if not low <= value <= high:
        raise _out_of_range(name, low, high, value)
    return value


def _number(body: Body, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type(name, "a decimal", value)
    if not low <= value <= high:
        raise _out_of_range(name, low, high, value)
    return float(value)


def _wrong_type(name: str, expected: str, value: object) -> ApiError:
    got = type(value).__name__
    return invalid(f"Invalid type for '{name}': expected {expected}, but got {got} instead.", name, "invalid_type")


def _out_of_range(name: str, low: float, high: float, value: object) -> ApiError:
    return invalid(
        f"Invalid '{name}': expected a value from {low} to {high}, but got {value} instead.",
        name,
        "invalid_value",
    )
