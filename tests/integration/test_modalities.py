"""OpenAI's Responses API and the other modalities through the gateway, with the official openai SDK
(and httpx for rerank), to the example upstream: every call one ledger record, its cost the test's
own computation from the prices and the units the client saw. The `modal` tests run on the default
engine: what they check (parsing, units, prices) is the chain's, the same on both; the engine-bound
part, streamed uploads, runs on both in test_upload_stream.py."""

from __future__ import annotations

import io
import os
import subprocess
import time
import wave
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from costwarden.domain.money import quantize
from costwarden.domain.record import Outcome, UsageRecord
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import VENV_BIN, Gateway, TextModel
from tests.integration.setup_config import CHAT_PRICES, KEYS, Upstreams, config_dict

MILLION = Decimal(1_000_000)
IMAGE_PRICES = {"1024x1024/hd": Decimal("0.08"), "1024x1024": Decimal("0.04"), "512x512": Decimal("0.018")}
AUDIO_PER_SECOND = Decimal("0.0001")
SPEECH_PER_1M = Decimal("15")
PER_DOCUMENT, PER_SEARCH_UNIT = Decimal("0.00001"), Decimal("0.002")
REASON_PRICES = {
    "input_per_1m": Decimal("2.00"),
    "cached_input_per_1m": Decimal("0.50"),
    "output_per_1m": Decimal("8.00"),
    "per_request": Decimal("0.0001"),
}


def modal_deployments(upstream: str) -> list[dict[str, Any]]:
    def prices(p: dict[str, Decimal]) -> dict[str, str]:
        return {k: str(v) for k, v in p.items()}

    def openai_deployment(name: str, p: dict[str, Decimal]) -> dict[str, Any]:
        return {"name": name, "protocol": "openai", "upstream": upstream, "model": "markov-small", "pricing": prices(p)}

    return [
        openai_deployment("reason", REASON_PRICES),
        openai_deployment("images", {}) | {"pricing": {"per_image": prices(IMAGE_PRICES)}},
        openai_deployment("whisper", {}) | {"pricing": {"per_audio_second": str(AUDIO_PER_SECOND)}},
        openai_deployment("tts", {}) | {"pricing": {"per_1m_characters": str(SPEECH_PER_1M)}},
        openai_deployment("rerank", {}) | {
            "pricing": {"per_document": str(PER_DOCUMENT), "per_search_unit": str(PER_SEARCH_UNIT)}
        },
    ]


def with_modal(
    make_gateway: GatewayFactory,
    textmodel: TextModel,
    tmp_path: Path,
    server: dict[str, Any] | None = None,
    **extra: Any,
) -> Gateway:
    base = config_dict(Upstreams(text=textmodel.url), tmp_path)["deployments"]
    return make_gateway(extra={"deployments": [*base, *modal_deployments(textmodel.url)], **extra}, **(server or {}))


@pytest.fixture(scope="module")
def _modal(
    make_module_gateway: GatewayFactory, textmodel: TextModel, tmp_path_factory: pytest.TempPathFactory
) -> Gateway:
    return with_modal(make_module_gateway, textmodel, tmp_path_factory.mktemp("modal"))


_EARLIER: dict[str, set[str]] = {}  # ledger URL -> the request ids recorded before the running test


@pytest.fixture
def modal(_modal: Gateway) -> Iterator[Gateway]:
    """One gateway the module's tests share; `records` shows each test its own requests' records only.
    Every request a test sends is answered before it ends: once the ledger stops growing, all are in."""
    _EARLIER[_modal.ledger] = {r.request_id for r in ledger.records(_modal.ledger)}
    yield _modal
    settled, deadline = len(ledger.records(_modal.ledger)), time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.5)  # five flush intervals
        if (count := len(ledger.records(_modal.ledger))) == settled:
            break
        settled = count
    _EARLIER.pop(_modal.ledger)


def sdk(gateway: Gateway, team: str = "search") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS[team], max_retries=0, timeout=30)


def records(gateway: Gateway, count: int) -> dict[str, UsageRecord]:
    """The test's own records once there are `count` (a shared gateway's ledger holds earlier tests' too)."""
    earlier = _EARLIER.get(gateway.ledger, set())
    deadline = time.monotonic() + 10
    while len(found := [r for r in ledger.records(gateway.ledger) if r.request_id not in earlier]) < count:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(found) == count, [(r.endpoint, r.status, r.error_code) for r in found]
    return ledger.by_id(found)


def reason_cost(input_tokens: int, cached: int, output: int) -> Decimal:
    p = REASON_PRICES
    uncached = (input_tokens - cached) * p["input_per_1m"]
    total = uncached + cached * p["cached_input_per_1m"] + output * p["output_per_1m"]
    return quantize(total / MILLION + p["per_request"])


# -- the Responses API


def test_a_response_is_priced_with_cached_and_reasoning_tokens_and_retrieved_for_a_request(modal: Gateway) -> None:
    with sdk(modal) as client:
        raw = client.responses.with_raw_response.create(
            model="reason",
            input="Tell me about the sea",
            max_output_tokens=16,
            reasoning={"effort": "low"},
            extra_body={"prompt_cache_key": "sea"},
        )
        response = raw.parse()
        retrieved = client.responses.with_raw_response.retrieve(
            response.id, extra_headers={"x-costwarden-deployment": "reason"}
        )
    usage = response.usage
    assert usage is not None and response.output_text
    assert usage.input_tokens_details.cached_tokens > 0 and usage.output_tokens_details.reasoning_tokens > 0
    expected = reason_cost(usage.input_tokens, usage.input_tokens_details.cached_tokens, usage.output_tokens)
    assert Decimal(raw.headers["x-costwarden-cost-usd"]) == expected
    assert retrieved.parse().id == response.id
    assert Decimal(retrieved.headers["x-costwarden-cost-usd"]) == REASON_PRICES["per_request"]

    found = records(modal, 2)
    created = found[raw.headers["x-costwarden-request-id"]]
    assert (created.endpoint, created.model, created.outcome) == ("/v1/responses", "reason", Outcome.SERVED)
    assert (created.input_tokens, created.cached_tokens, created.output_tokens) == (
        usage.input_tokens,
        usage.input_tokens_details.cached_tokens,
        usage.output_tokens,
    )
    assert created.reasoning_tokens == usage.output_tokens_details.reasoning_tokens
    assert created.cost_usd == expected
    fetched = found[retrieved.headers["x-costwarden-request-id"]]
    assert (fetched.endpoint, fetched.method, fetched.deployment) == ("/v1/responses/{id}", "GET", "reason")
    assert (fetched.input_tokens, fetched.output_tokens, fetched.cost_usd) == (0, 0, REASON_PRICES["per_request"])


def test_a_streamed_response_ends_on_its_completed_event_and_is_priced_from_it(modal: Gateway) -> None:
    with sdk(modal) as client, client.responses.create(
        model="reason", input="Once upon a time", max_output_tokens=12, stream=True
    ) as stream:
        events = list(stream)
    assert events[-1].type == "response.completed"
    usage = events[-1].response.usage
    assert usage is not None
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text
    (record,) = records(modal, 1).values()
    assert record.stream and record.outcome is Outcome.SERVED and record.error_code is None
    assert (record.input_tokens, record.output_tokens) == (usage.input_tokens, usage.output_tokens)
    assert record.cost_usd == reason_cost(usage.input_tokens, 0, usage.output_tokens)


def test_a_stream_carries_no_done_marker(modal: Gateway) -> None:
    body = {"model": "reason", "input": "hello", "max_output_tokens": 4, "stream": True}
    headers = {"Authorization": f"Bearer {KEYS['search']}"}
    with httpx.Client() as client, client.stream("POST", modal.url + "/v1/responses", json=body, headers=headers) as r:
        lines = [line for line in r.iter_lines() if line]
    assert "data: [DONE]" not in lines
    assert lines[-1].startswith(": costwarden request_id=")
    assert any(line == "event: response.completed" for line in lines)
    records(modal, 1)


def test_a_retrieve_needs_its_deployment_unless_the_key_has_one(modal: Gateway) -> None:
    with sdk(modal) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.retrieve("resp_unknown")
        created = client.responses.create(model="reason", input="a boat", max_output_tokens=4)
        with pytest.raises(openai.NotFoundError):  # a model this key has not: named like any other
            client.responses.retrieve(created.id, extra_headers={"x-costwarden-deployment": "nope"})
    assert refused.value.code == "deployment_required"
    with sdk(modal, "research") as research:  # its only OpenAI deployment is `chat`
        made = research.responses.create(model="chat", input="a boat", max_output_tokens=4)
        assert research.responses.retrieve(made.id).id == made.id
    found = list(records(modal, 5).values())
    assert sorted((r.endpoint, r.status) for r in found) == [
        ("/v1/responses", 200),
        ("/v1/responses", 200),
        ("/v1/responses/{id}", 200),
        ("/v1/responses/{id}", 400),
        ("/v1/responses/{id}", 404),
    ]
    headers = {"Authorization": f"Bearer {KEYS['search']}"}
    with httpx.Client(base_url=modal.url, headers=headers) as client:
        for method, path, status in (
            ("DELETE", "/v1/responses/resp_1", 405),
            ("GET", "/v1/responses/resp_1/input_items", 404),
            ("POST", "/v1/responses/resp_1/cancel", 404),
        ):
            answer = client.request(method, path)
            assert answer.status_code == status and isinstance(answer.json()["error"], dict)


def test_a_retrieve_near_a_budget_limit_holds_one_request_not_a_reply(make_gateway: GatewayFactory) -> None:
    # Before the fix a retrieve held a whole reply's worth of output tokens (4,096 at $1.50/1M,
    # $0.0061) at admission, and was refused below that although it costs one request ($0.0001).
    budget = {"id": "lab", "scope": {"team": "research"}, "window": "day", "limit_usd": "0.0015"}
    gateway = make_gateway(extra={"governance": {"evaluate_every_seconds": 0.3, "budgets": [budget]}})
    with sdk(gateway, "research") as client:
        made = client.responses.create(model="chat", input="the sea", max_output_tokens=4)
        for _ in range(3):
            assert client.responses.retrieve(made.id).id == made.id
    found = records(gateway, 4)
    assert all(r.status == 200 for r in found.values())
    assert sum((r.cost_usd for r in found.values()), Decimal(0)) <= Decimal("0.0015")
    assert [r.cost_usd for r in found.values() if r.method == "GET"] == [CHAT_PRICES["per_request"]] * 3


# -- images, audio, speech, rerank


def wav(seconds: float, rate: int = 16_000) -> bytes:
    """A real WAV file (16-bit mono silence), made here."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(bytes(2 * round(seconds * rate)))
    return out.getvalue()


def test_images_are_priced_per_image_by_size_and_quality(modal: Gateway) -> None:
    with sdk(modal) as client:
        hd = client.images.with_raw_response.generate(model="images", prompt="a boat", n=2, quality="hd")
        small = client.images.with_raw_response.generate(model="images", prompt="a boat", size="512x512")
    assert len(hd.parse().data or []) == 2 and len(small.parse().data or []) == 1
    found = records(modal, 2)
    for raw, expected in ((hd, 2 * IMAGE_PRICES["1024x1024/hd"]), (small, IMAGE_PRICES["512x512"])):
        record = found[raw.headers["x-costwarden-request-id"]]
        assert Decimal(raw.headers["x-costwarden-cost-usd"]) == record.cost_usd == expected
        assert record.endpoint == "/v1/images/generations" and record.pricing_basis == "image"
    assert sorted(r.images for r in found.values()) == [1, 2]


def test_transcriptions_and_translations_are_priced_per_second_of_audio(modal: Gateway) -> None:
    audio = wav(1.5)
    mp3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(16_000)  # an mp3's first bytes: its length is estimated
    with sdk(modal) as client:
        plain = client.audio.transcriptions.with_raw_response.create(model="whisper", file=("a.wav", audio))
        verbose = client.audio.transcriptions.create(
            model="whisper", file=("a.wav", audio), response_format="verbose_json"
        )
        with pytest.deprecated_call():  # this SDK marks translations deprecated; the endpoint still serves
            translated = client.audio.translations.with_raw_response.create(model="whisper", file=("a.mp3", mp3))
    assert plain.parse().text and verbose.duration == 1.5 and translated.parse().text
    found = list(records(modal, 3).values())
    assert [r.audio_ms for r in found] == [1500, 1500, len(mp3) * 8 * 1000 // 128_000]
    for record in found:
        assert record.cost_usd == quantize(AUDIO_PER_SECOND * record.audio_ms / 1000)
        assert record.outcome is Outcome.SERVED
    assert [r.pricing_basis for r in found] == ["audio", "audio", "audio+estimated"]
    assert found[2].endpoint == "/v1/audio/translations"


def test_a_transcript_as_text_or_as_a_stream_is_relayed_and_priced_from_the_upload(modal: Gateway) -> None:
    """`response_format` text, srt and vtt are answered in plain text, `stream=True` with an event
    stream: the gateway took each for a broken upstream (502, nothing billed, the upstream counted
    as failing) although the upstream had transcribed, and charged for, the audio."""
    audio = wav(1.5)
    with sdk(modal) as client:
        texts = [
            client.audio.transcriptions.with_raw_response.create(
                model="whisper", file=("a.wav", audio), response_format=answer_format
            )
            for answer_format in ("text", "srt", "vtt")
        ]
        stream = client.audio.transcriptions.create(model="whisper", file=("a.wav", audio), stream=True)
        events = list(stream)
    plain, srt, vtt = (raw.parse() for raw in texts)
    assert plain == "the quick brown fox\n" and "00:00:01,500" in srt and vtt.startswith("WEBVTT")
    done = events[-1]
    assert done.type == "transcript.text.done" and done.text == "the quick brown fox"
    assert "content-length" not in stream.response.headers  # relayed as it came, not read whole first
    ids = [raw.headers["x-costwarden-request-id"] for raw in texts]
    ids.append(stream.response.headers["x-costwarden-request-id"])
    found = records(modal, 4)
    assert sorted(found) == sorted(ids)
    for record in found.values():
        assert (record.status, record.outcome, record.audio_ms) == (200, Outcome.SERVED, 1500)
        assert record.cost_usd == quantize(AUDIO_PER_SECOND * Decimal("1.5"))
        assert record.pricing_basis == "audio"  # a WAV: its header's duration, not an estimate
    assert [found[i].stream for i in ids] == [False, False, False, True]  # the event stream is one


def test_speech_is_priced_per_character_and_relayed_in_chunks(modal: Gateway) -> None:
    text = "The sea was calm. " * 300
    with sdk(modal) as client, client.audio.speech.with_streaming_response.create(
        model="tts", voice="alloy", input=text, response_format="pcm"
    ) as response:
        chunks = list(response.iter_bytes(4096))
        request_id = response.headers["x-costwarden-request-id"]
    assert sum(len(c) for c in chunks) == 2 * len(text) and len(chunks) > 1
    record = records(modal, 1)[request_id]
    assert (record.characters, record.response_bytes) == (len(text), 2 * len(text))
    assert record.cost_usd == quantize(SPEECH_PER_1M * len(text) / MILLION)


@pytest.mark.parametrize(("field", "count"), [("documents", 3), ("texts", 250)])
def test_rerank_is_priced_per_document_and_search_unit(modal: Gateway, field: str, count: int) -> None:
    body = {"model": "rerank", "query": "the sea", field: [f"the sea number {i}" for i in range(count)]}
    headers = {"Authorization": f"Bearer {KEYS['search']}"}
    with httpx.Client() as client:
        answer = client.post(modal.url + "/v1/rerank", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    results = answer.json() if field == "texts" else answer.json()["results"]
    assert len(results) == count
    (record,) = records(modal, 1).values()
    units = -(-count // 100)
    assert (record.documents, record.cost_usd) == (count, quantize(PER_DOCUMENT * count + PER_SEARCH_UNIT * units))
    assert record.pricing_basis == "document+search_unit"
    assert record.endpoint == "/v1/rerank"  # `texts` went upstream to TEI's /rerank (its /v1/rerank takes none)


BAD = [
    ("/v1/images/generations", {"model": "images", "prompt": "x", "n": 2**64}, "integer_out_of_range"),
    ("/v1/images/generations", {"model": "images", "prompt": "x", "n": 11}, "integer_out_of_range"),
    ("/v1/images/generations", {"model": "images", "prompt": "x", "size": "256x256"}, "image_kind_not_priced"),
    ("/v1/images/generations", {"model": "images", "prompt": "x", "stream": True}, "stream_not_supported"),
    ("/v1/audio/speech", {"model": "tts", "voice": "alloy", "input": ""}, "missing_input"),
    ("/v1/rerank", {"model": "rerank", "query": "q", "documents": []}, "invalid_documents"),
    ("/v1/rerank", {"model": "rerank", "query": "q", "texts": ["a"] * 10_001}, "invalid_documents"),
]


def test_bad_modal_requests_get_openai_errors_and_a_record_and_are_not_forwarded(modal: Gateway) -> None:
    headers = {"Authorization": f"Bearer {KEYS['search']}"}
    sent = []
    with httpx.Client(base_url=modal.url, headers=headers) as client:
        for path, body, code in BAD:
            answer = client.post(path, json=body)
            sent.append((path, code))
            assert answer.status_code == 400 and answer.json()["error"]["code"] == code, answer.text
        uploads: list[tuple[dict[str, tuple[str | None, bytes]], str]] = [
            ({"file": ("a.wav", b"this is not audio at all")}, "invalid_audio"),
            ({"purpose": (None, b"none")}, "missing_file"),
            ({"file": ("a.wav", b"RIFF\x10\x00\x00\x00WAVEjunk")}, "invalid_audio"),
        ]
        for files, code in uploads:
            answer = client.post("/v1/audio/transcriptions", data={"model": "whisper"}, files=files)
            sent.append(("/v1/audio/transcriptions", code))
            assert answer.status_code == 400 and answer.json()["error"]["code"] == code, answer.text
        answer = client.post("/v1/audio/transcriptions", content=b"{}", headers={"content-type": "application/json"})
        sent.append(("/v1/audio/transcriptions", "invalid_multipart"))
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_multipart"
    found = records(modal, len(sent))
    assert sorted((r.endpoint, r.error_code) for r in found.values()) == sorted(sent)
    for record in found.values():
        assert record.upstream_status is None and record.cost_usd == 0 and record.outcome is Outcome.REJECTED
        assert not (record.images or record.audio_ms or record.characters or record.documents)


def test_a_budget_counts_images_and_speech_and_reports_and_metrics_show_each_unit(
    make_gateway: GatewayFactory, textmodel: TextModel, tmp_path: Path
) -> None:
    budget = {"id": "ads-day", "scope": {"team": "ads"}, "window": "day", "limit_usd": "0.1"}
    gateway = with_modal(
        make_gateway, textmodel, tmp_path, governance={"evaluate_every_seconds": 0.3, "budgets": [budget]}
    )
    with sdk(gateway, "ads") as client:
        client.images.generate(model="images", prompt="a boat", quality="hd")  # $0.08
        with pytest.raises(openai.RateLimitError) as refused:  # $0.03 more would pass the limit
            client.audio.speech.create(model="tts", voice="alloy", input="x" * 2000, response_format="pcm")
        client.audio.speech.create(model="tts", voice="alloy", input="x" * 1000, response_format="pcm")  # $0.015
        client.audio.transcriptions.create(model="whisper", file=("a.wav", wav(2.0)))  # $0.0002
    assert refused.value.code == "budget_exceeded"
    with httpx.Client() as client:
        rerank = {"model": "rerank", "query": "q", "documents": ["a", "b"]}
        client.post(gateway.url + "/v1/rerank", json=rerank, headers={"Authorization": f"Bearer {KEYS['search']}"})
        metrics = client.get(gateway.url + "/metrics").text
    found = list(records(gateway, 5).values())
    assert sum((r.cost_usd for r in found), Decimal(0)) == Decimal("0.08") + Decimal("0.015") + Decimal(
        "0.0002"
    ) + PER_DOCUMENT * 2 + PER_SEARCH_UNIT
    for unit, amount in (("images", 1), ("characters", 1000), ("audio_ms", 2000), ("documents", 2)):
        assert f'unit="{unit}"' in metrics and sum(getattr(r, unit) for r in found) == amount
        lines = [line for line in metrics.splitlines() if line.startswith("costwarden_units_total")]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in lines if f'unit="{unit}"' in line) == amount
    command = ["report", "--by", "deployment", "--since", "1h", "--config", str(gateway.config_path)]
    out = subprocess.run(
        [str(VENV_BIN / "costwarden"), *command], capture_output=True, check=True, timeout=60,
        cwd=gateway.config_path.parent, text=True, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    for header in ("images", "audio s", "chars", "docs"):
        assert header in out.stdout, out.stdout
    assert "2.000" in out.stdout  # two seconds of audio
