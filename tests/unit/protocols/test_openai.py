"""OpenAI wire format: request parsing, the upstream body rewrite, usage, error bodies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from costwarden.domain.usage import Usage
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.openai import (
    ENDPOINTS,
    MEDIA_PART_TOKENS,
    STREAMABLE,
    TEMPLATE_TOKENS,
    UNBOUNDED_OUTPUT,
    error_body,
    input_token_bound,
    models_body,
    parse_request,
    plausible_usage,
    upstream_body,
    usage_from,
)

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"


def rejects(raw: bytes, endpoint: str = CHAT) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        parse_request(raw, endpoint)
    assert info.value.status == 400
    return info.value


@pytest.mark.parametrize("raw", [b"", b"{", b"{'model': 'x'}", b"\xff\xfe", b'{"model": "x",}'])
def test_invalid_json(raw: bytes) -> None:
    error = rejects(raw)
    assert error.code == "invalid_json"
    assert error.kind == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"[]", b'"model"', b"42", b"null", b'[{"model": "x"}]'])
def test_a_body_that_is_not_an_object(raw: bytes) -> None:
    error = rejects(raw)
    assert error.code == "invalid_json"
    assert "JSON object" in error.message


@pytest.mark.parametrize("raw", [b"{}", b'{"model": ""}', b'{"model": null}', b'{"model": 3}', b'{"model": ["gpt"]}'])
def test_a_missing_model(raw: bytes) -> None:
    assert rejects(raw).code == "missing_model"


def test_a_plain_request() -> None:
    request = parse_request(b'{"model": "gpt", "messages": []}', CHAT)
    assert request.model == "gpt"
    assert request.stream is False
    assert request.client_wants_usage is False
    assert request.body == {"model": "gpt", "messages": []}


@pytest.mark.parametrize("endpoint", STREAMABLE)
def test_stream_on_streamable_endpoints(endpoint: str) -> None:
    assert parse_request(b'{"model": "m", "stream": true}', endpoint).stream is True


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e not in STREAMABLE])
def test_no_stream_elsewhere(endpoint: str) -> None:
    assert endpoint == EMBEDDINGS or endpoint.startswith(("/v1/images/", "/v1/audio/", "/v1/rerank"))
    assert parse_request(b'{"model": "m", "stream": true}', endpoint).stream is False


@pytest.mark.parametrize("value", [b"false", b"1", b'"true"', b"null"])
def test_stream_must_be_literally_true(value: bytes) -> None:
    assert parse_request(b'{"model": "m", "stream": ' + value + b"}", CHAT).stream is False


def test_client_wants_usage() -> None:
    raw = b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}}'
    assert parse_request(raw, CHAT).client_wants_usage is True
    raw = b'{"model": "m", "stream": true, "stream_options": {"include_usage": false}}'
    assert parse_request(raw, CHAT).client_wants_usage is False
    raw = b'{"model": "m", "stream": true, "stream_options": "yes"}'
    assert parse_request(raw, CHAT).client_wants_usage is False


def test_upstream_body_is_the_raw_bytes_when_nothing_changes() -> None:
    # Odd spacing, key order and unicode escapes must reach the upstream byte for byte.
    raw = b'{ "messages" : [{"role":"user","content":"caf\\u00e9"}],\n "model":"gpt" , "n": 1.0}'
    request = parse_request(raw, CHAT)
    assert upstream_body(request, raw, "gpt") is raw


def test_upstream_body_is_the_raw_bytes_when_the_client_already_asked_for_usage() -> None:
    raw = b'{"model":"gpt","stream":true,"stream_options":{"include_usage":true}}'
    assert upstream_body(parse_request(raw, CHAT), raw, "gpt") is raw


def test_a_stream_on_embeddings_is_left_alone() -> None:
    raw = b'{"model":"emb","stream":true,"input":"x"}'
    assert upstream_body(parse_request(raw, EMBEDDINGS), raw, "emb") is raw


def loads(raw: bytes) -> dict[str, Any]:
    body = orjson.loads(raw)
    assert isinstance(body, dict)
    return body


def test_streaming_sets_include_usage() -> None:
    raw = b'{"model":"gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    request = parse_request(raw, CHAT)
    body = loads(upstream_body(request, raw, "gpt"))
    assert body == {
        "model": "gpt",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "stream_options": {"include_usage": True},
    }
    assert request.body == loads(raw)  # the parsed request itself is not mutated


def test_streaming_keeps_other_stream_options() -> None:
    raw = b'{"model":"gpt","stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true}}'
    body = loads(upstream_body(parse_request(raw, CHAT), raw, "gpt"))
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


def test_the_model_is_rewritten() -> None:
    raw = b'{"model":"cheap","temperature":0.2,"messages":[]}'
    request = parse_request(raw, CHAT)
    body = loads(upstream_body(request, raw, "org/llama-3-8b"))
    assert body == {"model": "org/llama-3-8b", "temperature": 0.2, "messages": []}
    assert "stream_options" not in body
    assert request.model == "cheap"


def test_model_rewrite_and_include_usage_together() -> None:
    raw = b'{"model":"cheap","stream":true}'
    body = loads(upstream_body(parse_request(raw, CHAT), raw, "real"))
    assert body == {"model": "real", "stream": True, "stream_options": {"include_usage": True}}


@pytest.mark.parametrize(
    ("obj", "usage"),
    [
        ({"usage": {"prompt_tokens": 12, "completion_tokens": 30}}, Usage(12, 30, 0)),
        (
            {"usage": {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 8}}},
            Usage(12, 3, 8),
        ),
        ({"usage": {"prompt_tokens": 5, "prompt_tokens_details": None}}, Usage(5, 0, 0)),
        ({"usage": {"prompt_tokens": -5, "completion_tokens": "7"}}, Usage(0, 0, 0)),  # garbage counts as 0
        ({"usage": {"prompt_tokens": 12.0, "completion_tokens": 1e17}}, Usage(12, 10**17, 0)),  # bounded later
        ({"usage": {"prompt_tokens": 2.5, "completion_tokens": float("nan")}}, Usage(0, 0, 0)),
        ({"usage": None}, None),
        ({"choices": []}, None),
        ([{"usage": {}}], None),
        ("usage", None),
    ],
)
def test_usage_from(obj: object, usage: Usage | None) -> None:
    assert usage_from(obj) == usage


def test_error_body_shape() -> None:
    body = orjson.loads(error_body("no key", "authentication_error", "missing_api_key"))
    assert body == {
        "error": {"message": "no key", "type": "authentication_error", "code": "missing_api_key", "param": None}
    }


def test_models_body() -> None:
    body = orjson.loads(models_body(["a", "b"], 1700000000))
    assert body == {
        "object": "list",
        "data": [
            {"id": "a", "object": "model", "created": 1700000000, "owned_by": "costwarden"},
            {"id": "b", "object": "model", "created": 1700000000, "owned_by": "costwarden"},
        ],
    }


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("max_tokens", 10**17, "integer_out_of_range"),
        ("max_tokens", 2**31, "integer_out_of_range"),
        ("max_tokens", -1, "integer_out_of_range"),
        ("max_completion_tokens", 18446744073709551615, "integer_out_of_range"),
        ("n", 0, "integer_out_of_range"),
        ("n", 129, "integer_out_of_range"),
        ("n", 10**17, "integer_out_of_range"),
        ("n", "3", "invalid_type"),
        ("max_tokens", 2.5, "invalid_type"),
        ("max_tokens", True, "invalid_type"),
        ("max_tokens", [], "invalid_type"),
        ("max_tokens", 1e300, "integer_out_of_range"),
    ],
)
def test_request_counts_out_of_range_are_a_clear_400(field: str, value: object, code: str) -> None:
    raw = orjson.dumps({"model": "gpt", "messages": [], field: value})
    error = rejects(raw)
    assert error.status == 400 and error.code == code
    assert f"`{field}`" in error.message
    assert len(error.message) <= 200


# Found by the fuzz test: the message quoted the value with repr(), which recursed through 1000
# levels of nesting (RecursionError, a 500) and copied a megabyte string before cutting it.
@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens", "n"])
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("[" * 1000 + "]" * 1000, "an array"),
        ('{"a":' * 1000 + "1" + "}" * 1000, "an object"),
        ('"' + "x" * 1_000_000 + '"', "'xxxx"),
        ('"\\u0000"', "'\\x00'"),
    ],
)
def test_a_count_of_the_wrong_type_is_named_briefly(field: str, value: str, shown: str) -> None:
    error = rejects(f'{{"model":"gpt","{field}":{value}}}'.encode())
    assert error.code == "invalid_type" and f"`{field}` must be an integer, not {shown}" in error.message
    assert len(error.message) <= 120


@pytest.mark.parametrize(
    "counts", [{}, {"max_tokens": None}, {"max_tokens": 0, "n": 1}, {"max_tokens": 2**31 - 1, "n": 128}]
)
def test_request_counts_in_range_pass(counts: dict[str, object]) -> None:
    assert parse_request(orjson.dumps({"model": "gpt", **counts}), CHAT).model == "gpt"


CHAT_BODY: dict[str, Any] = {"model": "gpt", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


def test_plausible_usage_keeps_real_usage() -> None:
    usage = Usage(input_tokens=12, output_tokens=16, cached_tokens=4)
    assert plausible_usage(usage, CHAT_BODY, 80) == (usage, [])


def test_plausible_usage_bounds_an_absurd_prompt_count() -> None:
    bounded, over = plausible_usage(Usage(input_tokens=10**17, output_tokens=3), CHAT_BODY, 80)
    assert bounded.input_tokens == 80 + TEMPLATE_TOKENS and bounded.output_tokens == 3
    assert over == [f"prompt_tokens={10**17} > {80 + TEMPLATE_TOKENS}"]


def test_plausible_usage_bounds_output_by_max_tokens_times_n() -> None:
    body = {**CHAT_BODY, "n": 3}
    assert plausible_usage(Usage(output_tokens=48), body, 80)[1] == []
    bounded, over = plausible_usage(Usage(output_tokens=49), body, 80)
    assert bounded.output_tokens == 48 and over


def test_plausible_usage_without_max_tokens_has_a_sane_cap() -> None:
    body = {"model": "gpt", "messages": []}
    assert plausible_usage(Usage(output_tokens=UNBOUNDED_OUTPUT), body, 10)[1] == []
    assert plausible_usage(Usage(output_tokens=10**17), body, 10)[0].output_tokens == UNBOUNDED_OUTPUT


def test_plausible_usage_cached_never_exceeds_input() -> None:
    bounded, over = plausible_usage(Usage(input_tokens=10, cached_tokens=11), CHAT_BODY, 80)
    assert bounded.cached_tokens == 10 and over == ["cached_tokens=11 > 10"]


def test_plausible_usage_allows_for_images() -> None:
    # An image costs tokens its URL's bytes do not show.
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    body = {"model": "gpt", "messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, image]}]}
    assert plausible_usage(Usage(input_tokens=50_000), body, 150)[1] == []
    assert plausible_usage(Usage(input_tokens=MEDIA_PART_TOKENS * 2), body, 150)[1] != []


# Found by the fuzz test (tests/fuzz): a body nested deeper than the JSON writer's limit (254
# levels) made the model rewrite raise, and the gateway answered 500.
@pytest.mark.parametrize("depth", [255, 1000, 1023])
@pytest.mark.parametrize("where", ["extra", "messages"])
def test_a_body_too_deep_to_rewrite_is_a_clear_400(depth: int, where: str) -> None:
    nested = "[" * depth + "]" * depth
    raw = f'{{"model":"cheap","messages":[],"{where}":{nested}}}'.encode()
    if where == "messages":
        raw = f'{{"model":"cheap","messages":{nested}}}'.encode()
    request = parse_request(raw, CHAT)
    with pytest.raises(GatewayError) as info:
        upstream_body(request, raw, "real")
    assert (info.value.status, info.value.code) == (400, "nesting_too_deep")
    assert upstream_body(request, raw, "cheap") == raw  # nothing to rewrite: the upstream decides


@pytest.mark.parametrize("depth", [10, 254, 1000, 1021])
def test_the_input_bound_of_deeply_nested_content(depth: int) -> None:
    """Admission's input bound walks nested content without recursing (orjson reads 1024 levels)."""
    inner = "[" * depth + '"h\\u00e9llo"' + "]" * depth
    body = orjson.loads(f'{{"messages":[{{"role":"user","content":{inner}}}]}}')
    assert input_token_bound(body) == len("héllo".encode()) + 8
