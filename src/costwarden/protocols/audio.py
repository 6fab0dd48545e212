"""OpenAI audio, sans-I/O: transcriptions and translations (a multipart upload, priced per second
of input audio) and speech (JSON, priced per 1M input characters).

A WAV upload's duration is read from its header, capped by the data bytes actually sent. mp3,
flac, ogg, m4a and webm are recognised by their first bytes; their duration is the response's
`duration` (verbose_json) when it has one, else estimated at ESTIMATE_BITS_PER_SECOND (the record
is then marked `+estimated`). A response's duration is believed up to what the upload's bytes can
hold (a WAV's exact length; other formats at FLOOR_BITS_PER_SECOND). An upload that is none of
these is refused (`invalid_audio`) and not forwarded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from costwarden.protocols.errors import GatewayError

TRANSCRIPTIONS = "/v1/audio/transcriptions"
TRANSLATIONS = "/v1/audio/translations"
SPEECH = "/v1/audio/speech"
UPLOADS = (TRANSCRIPTIONS, TRANSLATIONS)
ESTIMATE_BITS_PER_SECOND = 128_000
FLOOR_BITS_PER_SECOND = 8_000  # below any speech codec's usual rate: the most audio bytes can hold
WAV_HEADER_LIMIT = 64 * 1024  # a WAV's `data` chunk must start within this many bytes
MAX_PARTS = 64
_HEADER_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a multipart body: its form name, whether it is a file, and where its content is."""

    name: str
    is_file: bool
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Upload:
    """A transcription or translation request: its model (and where it is in the body) and audio."""

    model: str
    model_part: Part
    audio_format: str
    audio_bytes: int
    exact_ms: int | None  # a WAV's duration from its header
    estimate_ms: int  # the duration estimated from the size (formats without a header length)
    cap_ms: int  # the most audio the upload's bytes can hold

    @property
    def upfront_ms(self) -> int:
        """The duration known before the upstream answers (admission, and the price without one)."""
        return self.exact_ms if self.exact_ms is not None else self.estimate_ms


def _invalid(message: str) -> GatewayError:
    return GatewayError(400, "invalid_multipart", message)


def boundary(content_type: bytes | None) -> bytes:
    """The boundary of a `multipart/form-data` Content-Type; a 400 for any other body."""
    if content_type is None or not content_type.lower().startswith(b"multipart/form-data"):
        raise _invalid("an audio upload must be multipart/form-data with a `file` part")
    for param in content_type.split(b";")[1:]:
        key, _, value = param.strip().partition(b"=")
        if key.lower() == b"boundary":
            value = value.strip().strip(b'"')
            if 1 <= len(value) <= 200:
                return value
    raise _invalid("the multipart Content-Type names no boundary")


def parts(body: bytes, mark: bytes) -> list[Part]:
    """The parts of a multipart body (RFC 7578), by offsets: the content is not copied."""
    delimiter = b"--" + mark
    at = body.find(delimiter)
    if at < 0:
        raise _invalid("the body holds no multipart boundary")
    found: list[Part] = []
    at += len(delimiter)
    while True:
        if body.startswith(b"--", at):
            return found
        if not body.startswith(b"\r\n", at):
            raise _invalid("a multipart boundary is not followed by a line break")
        head_end = body.find(_HEADER_END, at + 2, at + 2 + 16 * 1024)
        if head_end < 0:
            raise _invalid("a multipart part's headers do not end")
        head = body[at + 2 : head_end]
        start = head_end + len(_HEADER_END)
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise _invalid("the multipart body is cut short (no closing boundary)")
        name, is_file = _disposition(head)
        found.append(Part(name, is_file, start, end))
        if len(found) > MAX_PARTS:
            raise _invalid(f"a multipart body of more than {MAX_PARTS} parts")
        at = end + 2 + len(delimiter)


def _disposition(head: bytes) -> tuple[str, bool]:
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() != b"content-disposition":
            continue
        name, is_file = "", False
        for param in value.split(b";")[1:]:
            k, _, v = param.strip().partition(b"=")
            if k.lower() == b"name":
                name = v.strip(b'"').decode("utf-8", "replace")
            elif k.lower() == b"filename":
                is_file = True
        return name, is_file
    return "", False


def upload(body: bytes, content_type: bytes | None) -> Upload:
    """Read a transcription or translation request: its model and audio (400s as documented)."""
    found = {p.name: p for p in reversed(parts(body, boundary(content_type)))}  # the first of a name wins
    model_part = found.get("model")
    model = body[model_part.start : model_part.end].decode("utf-8", "replace").strip() if model_part else ""
    if model_part is None or not model or len(model) > 256:
        raise GatewayError(400, "missing_model", "the upload must name a `model` (a form field)")
    file = found.get("file")
    if file is None:
        raise GatewayError(400, "missing_file", "the upload has no `file` part: send the audio as the `file` field")
    audio = memoryview(body)[file.start : file.end]
    kind = audio_format(audio)
    if kind is None:
        raise GatewayError(400, "invalid_audio", "the `file` part is not audio (wav, mp3, flac, ogg, m4a or webm)")
    size = len(audio)
    exact = wav_ms(audio) if kind == "wav" else None
    estimate = size * 8 * 1000 // ESTIMATE_BITS_PER_SECOND
    cap = exact if exact is not None else size * 8 * 1000 // FLOOR_BITS_PER_SECOND
    return Upload(model, model_part, kind, size, exact, estimate, cap)


def audio_format(data: memoryview | bytes) -> str | None:
    """The audio format of an upload by its first bytes; None when it is not one we know."""
    head = bytes(data[:12])
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    return None


def wav_ms(data: memoryview | bytes) -> int:
    """A WAV's duration in milliseconds from its `fmt ` and `data` chunks, capped by the bytes sent."""
    at, byte_rate = 12, 0
    while at + 8 <= min(len(data), WAV_HEADER_LIMIT):
        chunk = bytes(data[at : at + 4])
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        if chunk == b"fmt " and size >= 16 and at + 24 <= len(data):
            byte_rate = int.from_bytes(data[at + 16 : at + 20], "little")
        elif chunk == b"data":
            if byte_rate <= 0:
                break
            sent = min(size, len(data) - at - 8)
            return sent * 1000 // byte_rate
        at += 8 + size + (size & 1)
    raise GatewayError(400, "invalid_audio", "the WAV upload has no readable `fmt ` and `data` chunks")


def renamed(body: bytes, part: Part, model: str) -> bytes:
    """The body with the model part's value replaced (the upstream's model name)."""
    return body[: part.start] + model.encode() + body[part.end :]


def answered_ms(answer: Any, upload: Upload) -> int | None:
    """The duration a transcription answer reports (verbose_json `duration`, seconds), capped by
    what the upload can hold; None when it reports none."""
    duration = answer.get("duration") if isinstance(answer, dict) else None
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration):
        return None
    return min(max(0, round(duration * 1000)), upload.cap_ms)


def speech_characters(body: dict[str, Any]) -> int:
    """The input characters of a speech request; a 400 when it has no text."""
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise GatewayError(400, "missing_input", "a speech request needs an `input` (the text to speak)")
    return len(text)
