"""Images, audio and rerank, sans-I/O: the units a request asks for, and the 400s of bad input."""

from __future__ import annotations

import io
import wave
from decimal import Decimal

import pytest

from costwarden.domain.pricing import PriceSheet, price, search_units
from costwarden.domain.usage import Usage
from costwarden.protocols import audio, images, rerank
from costwarden.protocols.errors import GatewayError

BOUNDARY = b"b0undary"
CONTENT_TYPE = b"multipart/form-data; boundary=" + BOUNDARY


def form(*fields: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + value + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


def wav(seconds: float, rate: int = 8000, channels: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(bytes(2 * channels * round(seconds * rate)))
    return out.getvalue()


class _Refused:
    def __init__(self, code: str) -> None:
        self.code = code

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: object, tb: object) -> bool:
        assert isinstance(error, GatewayError), f"expected a {self.code} refusal"
        assert (error.status, error.code) == (400, self.code)
        return True


def test_a_wav_upload_is_read_from_its_header_and_capped_by_the_bytes_sent() -> None:
    sound = wav(2.5)
    upload = audio.upload(form(("model", b"whisper", None), ("file", sound, "a.wav")), CONTENT_TYPE)
    assert (upload.model, upload.audio_format, upload.exact_ms, upload.upfront_ms) == ("whisper", "wav", 2500, 2500)
    cut = sound[: len(sound) // 2]  # the header still says 2.5 s: only what was sent counts
    sent_ms = (len(cut) - 44) * 1000 // (8000 * 2 * 2)  # data bytes after the 44-byte header, at its byte rate
    assert audio.upload(form(("model", b"w", None), ("file", cut, "a.wav")), CONTENT_TYPE).exact_ms == sent_ms < 2500
    assert audio.answered_ms({"duration": 1e300}, upload) == 2500
    assert audio.answered_ms({"duration": 1.2}, upload) == 1200
    assert audio.answered_ms({"duration": "3"}, upload) is None and audio.answered_ms({}, upload) is None


@pytest.mark.parametrize(
    ("head", "kind"),
    [(b"ID3\x04", "mp3"), (b"\xff\xfb\x90", "mp3"), (b"fLaC", "flac"), (b"OggS", "ogg"),
     (b"\x00\x00\x00\x20ftypM4A ", "m4a"), (b"\x1a\x45\xdf\xa3", "webm")],
)  # fmt: skip
def test_compressed_formats_are_recognised_and_estimated_at_128_kbits(head: bytes, kind: str) -> None:
    data = head + bytes(32_000 - len(head))
    upload = audio.upload(form(("file", data, "x"), ("model", b"m", None)), CONTENT_TYPE)
    assert (upload.audio_format, upload.exact_ms, upload.upfront_ms) == (kind, None, 2000)
    assert upload.cap_ms == 32_000  # at most 8 kbit/s of audio: a longer reported duration is not believed


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (form(("model", b"m", None), ("file", b"plain text", "a.txt")), CONTENT_TYPE, "invalid_audio"),
        (form(("model", b"m", None), ("file", b"RIFF\0\0\0\0WAVEdata", "a.wav")), CONTENT_TYPE, "invalid_audio"),
        (form(("model", b"m", None)), CONTENT_TYPE, "missing_file"),
        (form(("file", wav(0.1), "a.wav")), CONTENT_TYPE, "missing_model"),
        (b'{"model": "m"}', b"application/json", "invalid_multipart"),
        (form(("model", b"m", None)), b"multipart/form-data", "invalid_multipart"),
        (form(("model", b"m", None))[:-20], CONTENT_TYPE, "invalid_multipart"),
        (form(*[("f", b"x", None)] * 70), CONTENT_TYPE, "invalid_multipart"),
    ],
)
def test_bad_uploads_are_refused(body: bytes, content_type: bytes, code: str) -> None:
    with _Refused(code):
        audio.upload(body, content_type)


def test_renaming_the_model_changes_only_its_part() -> None:
    sound = wav(0.5)
    body = form(("model", b"whisper", None), ("file", sound, "a.wav"))
    upload = audio.upload(body, CONTENT_TYPE)
    again = audio.upload(audio.renamed(body, upload.model_part, "whisper-large-v3"), CONTENT_TYPE)
    assert again.model == "whisper-large-v3" and again.exact_ms == upload.exact_ms == 500


def test_images_ask_for_n_of_a_kind_and_a_priced_kind() -> None:
    assert images.requested({"prompt": "x"}) == (1, "1024x1024")
    assert images.requested({"n": 3, "size": "512x512", "quality": "hd"}) == (3, "512x512/hd")
    for bad in ({"n": 0}, {"n": 11}, {"n": 2**64}, {"n": -1}, {"n": True}, {"n": "2"}, {"size": 5}):
        with pytest.raises(GatewayError) as error:
            images.requested(bad)
        assert error.value.status == 400
    sheet = PriceSheet(per_image=(("1024x1024", Decimal("0.04")), ("1024x1024/hd", Decimal("0.08"))))
    images.check_priced(sheet, "1024x1024/medium", "img")  # falls back to the size
    with _Refused("image_kind_not_priced"):
        images.check_priced(sheet, "256x256", "img")
    images.check_priced(PriceSheet(), "256x256", "img")  # a deployment that does not price images
    assert images.images_in({"data": [{}, {}, {}]}, 2) == 2 and images.images_in([], 2) == 0


def test_a_streamed_image_generation_is_refused() -> None:
    """Its event stream, read whole, is no JSON object: the upstream's images went unbilled (502)."""
    with _Refused("stream_not_supported"):
        images.requested({"prompt": "x", "stream": True})
    assert images.requested({"prompt": "x", "stream": False}) == (1, "1024x1024")


def test_each_rerank_schema_goes_to_the_path_its_servers_serve() -> None:
    """Text Embeddings Inference serves `texts` at /rerank and has no /v1/rerank (it answered 404)."""
    assert rerank.upstream_path({"query": "q", "texts": ["a"]}) == "/rerank"
    assert rerank.upstream_path({"query": "q", "documents": ["a"]}) == "/v1/rerank"
    assert rerank.upstream_path({"query": "q", "documents": ["a"], "texts": ["b"]}) == "/v1/rerank"  # as counted


def test_rerank_takes_1_to_10000_documents() -> None:
    assert rerank.documents({"query": "q", "documents": ["a", {"text": "b"}]}) == 2
    assert rerank.documents({"query": "q", "texts": ["a"] * 10_000}) == 10_000
    for body, code in (
        ({"query": "q", "documents": []}, "invalid_documents"),
        ({"query": "q", "texts": ["a"] * 10_001}, "invalid_documents"),
        ({"query": "q", "documents": "a"}, "missing_documents"),
        ({"documents": ["a"]}, "missing_query"),
    ):
        with _Refused(code):
            rerank.documents(body)


def test_each_unit_is_priced_exactly() -> None:
    sheet = PriceSheet(
        per_image=(("1024x1024", Decimal("0.04")), ("1024x1024/hd", Decimal("0.08"))),
        per_audio_second=Decimal("0.0001"),
        per_1m_characters=Decimal("15"),
        per_document=Decimal("0.00001"),
        per_search_unit=Decimal("0.002"),
    )
    assert sheet.basis == "image+audio+characters+document+search_unit"
    usage = Usage(images=2, audio_ms=1500, characters=1000, documents=101)
    expected = Decimal("0.16") + Decimal("0.00015") + Decimal("0.015") + Decimal("0.00101") + Decimal("0.004")
    assert price(sheet, usage, image_kind="1024x1024/hd") == expected
    assert price(sheet, usage, served=False, image_kind="1024x1024/hd") == 0
    assert [search_units(n) for n in (0, 1, 100, 101, 10_000)] == [0, 1, 1, 2, 100]


# -- a streamed upload: its head, then the file part counted as it passes


def test_a_head_is_streamed_once_it_holds_the_model_and_the_file_parts_first_bytes() -> None:
    sound = wav(3.0)
    body = form(("model", b"whisper", None), ("file", sound, "a.wav"))
    start = body.index(sound)
    assert audio.head_plan(body[: start - 10], BOUNDARY) == "more"  # the file part's headers are not all here
    assert audio.head_plan(body[: start + 20], BOUNDARY) == "more"  # the WAV header is not all here
    assert audio.head_plan(body[: start + 44], BOUNDARY) == "stream"
    mp3 = form(("model", b"whisper", None), ("file", b"ID3\x04" + bytes(100), "a.mp3"))
    assert audio.head_plan(mp3[: mp3.index(b"ID3") + 12], BOUNDARY) == "stream"
    model_last = form(("file", sound, "a.wav"), ("model", b"whisper", None))  # the model comes after the file
    assert audio.head_plan(model_last[:2000], BOUNDARY) == "whole"
    assert audio.head_plan(bytes(audio.HEAD_LIMIT + 1), BOUNDARY) == "whole"


def test_a_streamed_upload_is_priced_on_the_file_bytes_counted_as_they_pass() -> None:
    sound = wav(3.0)
    body = form(("model", b"whisper", None), ("file", sound, "a.wav"))
    head = body[: body.index(sound) + 100]
    upload = audio.upload(head, CONTENT_TYPE, expected=len(body), complete=False)
    assert upload.file_part is not None and not upload.complete
    assert upload.upfront_ms == 3000  # before the rest: the header's duration, within Content-Length
    end = audio.FileEnd(BOUNDARY, head[upload.file_part.start :])
    rest = body[len(head) :]
    split = rest.index(b"\r\n--" + BOUNDARY) + 3  # the closing delimiter spans two chunks
    for chunk in (rest[:1000], rest[1000:split], rest[split:]):
        end.feed(chunk)
    assert end.closed and end.size == len(sound)
    assert audio.finished(upload, end.size).exact_ms == 3000
    cut = audio.FileEnd(BOUNDARY, head[upload.file_part.start :])
    cut.feed(rest[: len(rest) // 2])  # the client stopped half way: only what was relayed counts
    assert not cut.closed
    assert audio.finished(upload, cut.size).exact_ms == (cut.size - 44) * 1000 // (8000 * 2 * 2) < 3000
