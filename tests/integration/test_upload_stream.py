"""Audio uploads are streamed upstream (bounded memory): the gateway reads the form fields and the
file part's head, then relays the rest chunk by chunk, counting it against `max_body_bytes`.

The upstream (examples/textmodel) answers with the length and SHA-256 of the file it received.
Every test on both server engines (on `fast` a streamed upload still goes upstream by aiohttp).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from costwarden.domain.money import quantize
from costwarden.domain.record import Outcome
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway, TextModel
from tests.integration.setup_config import KEYS
from tests.integration.test_modalities import AUDIO_PER_SECOND, records, sdk, wav, with_modal

BIG_SECONDS = 1500  # 48 MB of 16 kHz 16-bit mono
BOUNDARY = "costwarden-test-boundary"
HEADERS = {"Authorization": f"Bearer {KEYS['search']}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


class PeakRss:
    """The highest resident set size of a process while the block runs, sampled every few ms."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_large_upload_is_relayed_intact_with_bounded_gateway_memory(
    on_engines: GatewayFactory, textmodel: TextModel, tmp_path: Path
) -> None:
    gateway = with_modal(on_engines, textmodel, tmp_path, server={"max_body_bytes": 64 * 1024 * 1024})
    assert gateway.proc is not None
    audio = wav(BIG_SECONDS)
    with sdk(gateway) as client:
        # Warm: imports, pools, and aiohttp's session (made on the first streamed upload: a file this size
        # arrives in several reads, so it is streamed, as the big one is); what is measured is the relay.
        client.audio.transcriptions.create(model="whisper", file=("a.wav", wav(30.0)))
        assert "aiohttp" in Path(f"/proc/{gateway.proc.pid}/maps").read_text()  # its extension modules are loaded
        before = psutil.Process(gateway.proc.pid).memory_info().rss
        with PeakRss(gateway.proc.pid) as rss:
            raw = client.audio.transcriptions.with_raw_response.create(
                model="whisper", file=("a.wav", audio), response_format="verbose_json"
            )
    answer = raw.http_response.json()
    assert answer["x_received_bytes"] == len(audio)
    assert answer["x_received_sha256"] == hashlib.sha256(audio).hexdigest()
    assert answer["duration"] == BIG_SECONDS
    growth = rss.peak - before
    assert growth < len(audio) // 8, f"the gateway grew by {growth} bytes relaying {len(audio)}"
    record = records(gateway, 2)[raw.headers["x-costwarden-request-id"]]
    assert record.outcome is Outcome.SERVED and record.audio_ms == BIG_SECONDS * 1000
    assert record.cost_usd == quantize(AUDIO_PER_SECOND * BIG_SECONDS)
    assert record.pricing_basis == "audio"
    assert record.request_bytes == int(raw.http_request.headers["content-length"]) > len(audio)  # all of it


def form_head(model: str = "whisper") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n\r\n'
    ).encode() + b"ID3\x04\x00\x00\x00\x00\x00\x00"


def chunked(pieces: list[bytes]) -> Iterator[bytes]:
    """A body sent in pieces without a Content-Length: the gateway sees the head before the rest."""
    for piece in pieces:
        yield piece
        time.sleep(0.05)


@pytest.fixture
def small_limit(on_engines: GatewayFactory, textmodel: TextModel, tmp_path: Path) -> Gateway:
    """On each server engine (so every test taking it runs on both)."""
    return with_modal(on_engines, textmodel, tmp_path, server={"max_body_bytes": 1024 * 1024})


@pytest.mark.parametrize(
    ("rest", "status", "code"),
    [
        ([bytes(512 * 1024)] * 4, 413, "request_too_large"),  # the limit is a running count
        ([bytes(64 * 1024)], 400, "invalid_multipart"),  # the body ends inside the file part
    ],
)
def test_a_streamed_upload_that_goes_wrong_on_the_way_is_refused_and_recorded(
    small_limit: Gateway, rest: list[bytes], status: int, code: str
) -> None:
    with httpx.Client(base_url=small_limit.url, headers=HEADERS, timeout=30) as client:
        answer = client.post("/v1/audio/transcriptions", content=chunked([form_head(), *rest]))
        assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text
        # the relayed part priced nothing; the next upload on a new connection is served whole
        after = client.post("/v1/audio/transcriptions", content=form_head() + f"\r\n--{BOUNDARY}--\r\n".encode())
        assert after.status_code == 200, after.text
    found = sorted(records(small_limit, 2).values(), key=lambda r: r.started_at)
    refused = found[0]
    assert refused.outcome is Outcome.REJECTED and refused.error_code == code and refused.status == status
    assert refused.upstream_status is None and refused.cost_usd == 0 and not refused.audio_ms
    assert found[1].outcome is Outcome.SERVED


def test_a_streamed_upload_answered_with_an_event_stream_is_relayed_as_it_comes_and_priced_from_the_upload(
    small_limit: Gateway,
) -> None:
    """`stream=true` (a field before the file): the transcript's events are relayed as the upstream
    sends them, and the record prices the file bytes counted as they passed (an mp3: estimated)."""
    stream_field = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="stream"\r\n\r\ntrue\r\n'.encode()
    rest = [bytes(64 * 1024)] * 3
    end = f"\r\n--{BOUNDARY}--\r\n".encode()
    with httpx.Client(base_url=small_limit.url, headers=HEADERS, timeout=30) as client:
        answer = client.post("/v1/audio/transcriptions", content=chunked([stream_field + form_head(), *rest, end]))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream") and "content-length" not in answer.headers
    assert answer.text.rstrip().endswith('"text":"the quick brown fox"}')
    file_bytes = 10 + sum(len(piece) for piece in rest)  # the mp3's first bytes, then the rest
    (record,) = records(small_limit, 1).values()
    assert (record.outcome, record.status, record.audio_ms) == (Outcome.SERVED, 200, file_bytes * 8 * 1000 // 128_000)
    assert record.cost_usd == quantize(AUDIO_PER_SECOND * record.audio_ms / 1000)
    assert record.pricing_basis == "audio+estimated"
    assert record.stream  # answered with an event stream


def test_a_streamed_upload_that_is_not_audio_is_refused_from_its_head_and_not_forwarded(small_limit: Gateway) -> None:
    head = form_head().removesuffix(b"ID3\x04\x00\x00\x00\x00\x00\x00") + b"not audio at all"
    with httpx.Client(base_url=small_limit.url, headers=HEADERS, timeout=30) as client:
        answer = client.post("/v1/audio/transcriptions", content=chunked([head, *[bytes(256 * 1024)] * 3]))
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_audio", answer.text
        after = client.post("/v1/audio/transcriptions", content=form_head() + f"\r\n--{BOUNDARY}--\r\n".encode())
        assert after.status_code == 200, after.text
    found = sorted(records(small_limit, 2).values(), key=lambda r: r.started_at)
    assert found[0].error_code == "invalid_audio" and found[0].upstream_status is None
    assert found[0].outcome is Outcome.REJECTED and found[1].outcome is Outcome.SERVED


def test_a_client_that_goes_away_mid_upload_is_recorded_and_the_upstream_request_aborted(small_limit: Gateway) -> None:
    head = form_head()
    request = (
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: gateway\r\n"
        + f"Authorization: Bearer {KEYS['search']}\r\n".encode()
        + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n".encode()
        + f"Content-Length: {len(head) + 500_000}\r\n\r\n".encode()
        + head
    )
    with socket.create_connection(("127.0.0.1", small_limit.port), timeout=10) as sock:
        sock.sendall(request)
        time.sleep(0.2)  # the gateway has the head and starts the upstream request
        sock.sendall(bytes(100_000))  # a fifth of what it promised, then gone
        time.sleep(0.2)
    found = list(records(small_limit, 1).values())
    assert [(r.status, r.error_code, r.outcome, r.upstream_status) for r in found] == [
        (499, "incomplete_body", Outcome.REJECTED, None)
    ]
    assert found[0].cost_usd == 0 and not found[0].audio_ms
    with httpx.Client(base_url=small_limit.url, timeout=10) as client:  # and the gateway serves on
        after = client.post(
            "/v1/audio/transcriptions", content=form_head() + f"\r\n--{BOUNDARY}--\r\n".encode(), headers=HEADERS
        )
        assert after.status_code == 200, after.text
