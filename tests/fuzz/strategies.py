"""Hypothesis strategies for fuzz requests to every gateway endpoint.

A request starts from a plausible one for its endpoint (so it gets past the first checks) and is
then mutated: extreme numbers and wrong types in its fields, huge or odd strings, deep nesting,
broken bytes, a wrong method, an odd path or query, odd headers, broken framing.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.cases import Raw, to_json
from tests.integration.setup_config import KEYS

# Only deployments whose upstream is healthy: a 5xx is then never the upstream's fault.
OPENAI_MODELS = ("chat", "embed")
ODD_NAMES = ("", "nope", "CHAT", "chat ", "iris", "textproxy", "../chat", "chat\x00", "😀", "x" * 300)
NUMBERS = tuple(
    Raw(n)
    for n in (
        "18446744073709551616",  # 2^64
        "18446744073709551615",
        "9223372036854775808",  # 2^63
        "9223372036854775807",
        "4294967297",
        "2147483648",
        "-1",
        "-9223372036854775809",
        "0",
        "-0",
        "1e308",
        "-1e308",
        "1e309",
        "1e-400",
        "0.5",
        "1.0",
        "NaN",
        "Infinity",
        "-Infinity",
        "1" * 400,
    )
)
OTHER_VALUES: tuple[object, ...] = (None, True, False, "", "1", "\x00", "é\u202e😀", [], {}, [1], {"a": 1})
EXTREMES: tuple[object, ...] = (*NUMBERS, *OTHER_VALUES)
DEPTHS = (64, 255, 256, 1000, 1025, 5000)
HUGE = (1000, 30_000, 64_000, 70_000)  # the fuzz gateway's max_body_bytes is 65536
GOOD_KEYS = (KEYS["search"], KEYS["search"], KEYS["search"], KEYS["ads"], KEYS["research"])

MODEL = st.sampled_from(OPENAI_MODELS * 20 + ODD_NAMES)
TEXT = st.text(max_size=40) | st.sampled_from(["hi", "tell me a story", "\x00", "\ud800", "😀" * 10])


@st.composite
def chat_body(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": draw(MODEL),
        "messages": [{"role": draw(st.sampled_from(["user", "system", "tool", ""])), "content": draw(TEXT)}],
        "max_tokens": draw(st.integers(1, 12)),
    }
    if draw(st.booleans()):
        body["stream"] = True
        if draw(st.booleans()):
            body["stream_options"] = {"include_usage": draw(st.booleans())}
    if draw(st.booleans()):
        body["n"] = draw(st.integers(1, 3))
    if draw(st.booleans()):
        body["messages"].append({"role": "user", "content": [{"type": "text", "text": draw(TEXT)}]})
    return body


@st.composite
def completion_body(draw: st.DrawFn) -> dict[str, Any]:
    prompt = draw(TEXT | st.lists(TEXT, max_size=3) | st.lists(st.integers(0, 50_000), max_size=5))
    body: dict[str, Any] = {"model": draw(MODEL), "prompt": prompt}
    body["max_tokens"] = draw(st.integers(1, 12))
    if draw(st.booleans()):
        body["stream"] = True
    return body


@st.composite
def embedding_body(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"model": draw(MODEL), "input": draw(TEXT | st.lists(TEXT))}
    if draw(st.booleans()):
        body["dimensions"] = draw(st.integers(1, 64))
    if draw(st.booleans()):
        body["encoding_format"] = draw(st.sampled_from(["float", "base64"]))
    return body


@st.composite
def infer_body(draw: st.DrawFn) -> dict[str, Any]:
    rows = draw(st.integers(0, 5))
    data = draw(st.lists(st.floats(0, 10, width=32), min_size=rows * 4, max_size=rows * 4))
    tensor = {"name": "predict", "shape": [rows, 4], "datatype": draw(st.sampled_from(["FP32", "FP64", "INT64"]))}
    body: dict[str, Any] = {"inputs": [{**tensor, "data": data}]}
    if draw(st.booleans()):
        body["parameters"] = {"content_type": "np"}
    return body


FIELDS: dict[str, tuple[str, ...]] = {
    "chat": (
        "max_tokens",
        "max_completion_tokens",
        "n",
        "temperature",
        "top_p",
        "seed",
        "stream",
        "stream_options",
        "stream_options.include_usage",
        "logprobs",
        "top_logprobs",
        "logit_bias.50256",
        "model",
        "messages",
        "messages.0",
        "messages.0.content",
        "messages.0.role",
        "messages.1.content.0",
    ),
    "completion": ("max_tokens", "n", "prompt", "prompt.0", "echo", "best_of", "stream", "model", "suffix"),
    "embedding": ("input", "input.0", "dimensions", "encoding_format", "model", "user"),
    "infer": (
        "inputs",
        "inputs.0",
        "inputs.0.shape",
        "inputs.0.shape.0",
        "inputs.0.shape.1",
        "inputs.0.data",
        "inputs.0.data.0",
        "inputs.0.datatype",
        "inputs.0.name",
        "inputs.1",
        "outputs",
        "parameters",
        "id",
    ),
}


def set_in(body: Any, path: str, value: object) -> Any:
    """A copy of `body` with the value at the dotted `path` (list indexes are numbers) set or added."""
    out = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        child: Any = None
        if isinstance(node, dict):
            child = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            child = node[int(part)]
        if not isinstance(child, dict | list):
            return out  # the path is not there in this body: leave it
        node = child
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and last.isdigit():
        index = int(last)
        node[index : index + 1] = [value]
    return out


@st.composite
def field_value(draw: st.DrawFn) -> object:
    kind = draw(st.sampled_from(["extreme", "extreme", "extreme", "deep", "huge", "text"]))
    if kind == "extreme":
        return draw(st.sampled_from(EXTREMES))
    if kind == "deep":
        depth = draw(st.sampled_from(DEPTHS))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return Raw(opener * depth + "1" + closer * depth)
    if kind == "huge":
        return draw(st.sampled_from(["x", "é", "\x00", "😀"])) * (draw(st.sampled_from(HUGE)) // 4)
    return draw(st.text(max_size=200))


@st.composite
def mutated_body(draw: st.DrawFn, kind: str, base: dict[str, Any]) -> tuple[bytes, list[str]]:
    notes: list[str] = []
    body: Any = base
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        path = draw(st.sampled_from(FIELDS[kind]))
        if draw(st.integers(0, 5)) == 0:
            body = set_in(body, path, Raw(""))  # drops the value: invalid JSON text
            notes.append(f"{path}=<empty>")
        else:
            value = draw(field_value())
            body = set_in(body, path, value)
            notes.append(f"{path}={str(value)[:40]!r}")
    raw = to_json(body).encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none"] * 24 + ["truncate", "garbage", "bom", "bytes", "empty", "scalar", "utf8"]))
    if damage != "none":
        notes.append(f"body:{damage}")
    if damage == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif damage == "garbage":
        raw += draw(st.binary(min_size=1, max_size=20))
    elif damage == "bom":
        raw = "\ufeff".encode() + raw
    elif damage == "bytes":
        raw = draw(st.binary(max_size=200))
    elif damage == "empty":
        raw = b""
    elif damage == "scalar":
        raw = draw(st.sampled_from([b"null", b"1", b'"x"', b"[]", b"true", b"18446744073709551616"]))
    elif damage == "utf8":
        raw = raw.replace(b"user", b"us\xff\xfer", 1)
    return raw, notes
