"""Bench payloads: JSONL files of real bodies (errors name file and line) and the generator."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from costwarden.bench.payloads import PayloadError, endpoint, from_jsonl, generated


def test_openai_bodies_get_the_model_and_the_stream_setting(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n\n{"model": "own", "messages": []}\n')
    first, second = from_jsonl(path, "openai", "chat", stream=True)
    body = orjson.loads(first.body)
    assert body["model"] == "chat" and body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert orjson.loads(second.body)["model"] == "own"
    assert endpoint("http://h:1/", "openai", "chat") == "http://h:1/v1/chat/completions"
    assert endpoint("http://h:1", "v2", "iris") == "http://h:1/v2/models/iris/infer"


def test_v2_bodies_count_their_items(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    tensor = {"name": "x", "shape": [3, 4], "datatype": "FP32", "data": [0.0] * 12}
    path.write_bytes(orjson.dumps({"inputs": [tensor]}) + b"\n")
    (payload,) = from_jsonl(path, "v2", "iris", stream=False)
    assert payload.items == 3
    assert all(p.items == 1 for p in generated("v2", "iris", False, 5, random.Random(0)))


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json}\n", "p.jsonl:1: not JSON"), ("{}\n[1]\n", "p.jsonl:2: expected a JSON object"), ("\n", "no request")],
)
def test_bad_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(PayloadError, match=message):
        from_jsonl(path, "openai", "chat", stream=False)
    path.write_text('{"inputs": []}\n')
    with pytest.raises(PayloadError, match=r"p\.jsonl:1: not a V2 inference request"):
        from_jsonl(path, "v2", "iris", stream=False)
