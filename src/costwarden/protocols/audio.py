"""OpenAI audio, sans-I/O: transcriptions and translations (a multipart upload, priced per second
of input audio) and speech (JSON, priced per 1M input characters).

A WAV upload's duration is read from its header, capped by the data bytes actually sent. mp3,
flac, ogg, m4a and webm are recognised by their first bytes; their duration is the response's
`duration` (verbose_json) when it has one, else estimated at ESTIMATE_BITS_PER_SECOND (the record
is then marked `+estimated`). A response's duration is believed up to what the upload's bytes can
hold (a WAV's exact length; other formats at FLOOR_BITS_PER_SECOND). An upload that is none of
these is refused (`invalid_audio`) and not forwarded.

An upload is streamed upstream (bounded memory): the gateway reads only its head, the form fields
and the `file` part's first bytes (`head_ready`), reads the upload from that (`upload(...,
complete=False)`: the file part is open, its size estimated from Content-Length), counts the file
part's bytes as the rest passes (`FileEnd`), and settles on the counted size (`finished`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
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
HEAD_LIMIT = 1024 * 1024  # form fields before the file part beyond this: the body is buffered whole
_HEADER_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a multipart body: its form name, whether it is a file, and where its content is."""

    name: str
    is_file: bool
    start: int
    end: int  # an open part (a streamed body's file part, not yet all here): the head's end


@dataclass(frozen=True, slots=True)
class Wav:
    """Where a WAV's samples are and how fast they play: its duration for any number of bytes."""

    byte_rate: int
    data_at: int  # the offset of the samples in the file
    declared: int  # the `data` chunk's declared size

    def ms(self, file_bytes: int) -> int:
        """The duration of the samples among `file_bytes` bytes of the file (at most the declared)."""
        return min(self.declared, max(0, file_bytes - self.data_at)) * 1000 // self.byte_rate


@dataclass(frozen=True, slots=True)
class Upload:
    """A transcription or translation request: its model (and where it is in the body) and audio."""

    model: str
    model_part: Part
    audio_format: str
    audio_bytes: int  # an open upload (streamed): the size expected until `finished` counts it
    exact_ms: int | None  # a WAV's duration from its header
    estimate_ms: int  # the duration estimated from the size (formats without a header length)
    cap_ms: int  # the most audio the upload's bytes can hold
    wav: Wav | None = None
    file_part: Part | None = None
    complete: bool = True  # False: streamed, its size not yet counted

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


def parts(body: bytes, mark: bytes, complete: bool = True) -> list[Part]:
    """The parts of a multipart body (RFC 7578), by offsets: the content is not copied.

    Of a body's head (`complete` False) the parts up to the `file` part, which is open (it ends
    where the head does); none when the head does not reach the file part's content.
    """
    delimiter = b"--" + mark
    at = body.find(delimiter)
    if at < 0:
        if not complete:
            return []
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
            if not complete and len(body) < at + 2 + 16 * 1024:
                return []
            raise _invalid("a multipart part's headers do not end")
        head = body[at + 2 : head_end]
        start = head_end + len(_HEADER_END)
        end = body.find(b"\r\n" + delimiter, start)
        name, is_file = _disposition(head)
        if not complete and (end < 0 or name == "file"):
            return [*found, Part(name, is_file, start, len(body))] if name == "file" else []
        if end < 0:
            raise _invalid("the multipart body is cut short (no closing boundary)")
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


def head_plan(head: bytes, mark: bytes) -> str:
    """What a body's head allows: "stream" the rest once it holds the form fields, the `model`
    among them, and the `file` part's first bytes (a WAV's header, or enough to know it is none);
    "more" to read on; "whole" to buffer the whole body (within the cap) when the model comes
    after the file, or the fields before it are over HEAD_LIMIT."""
    found = parts(head, mark, complete=False)
    if not found:
        return "more" if len(head) <= HEAD_LIMIT else "whole"
    if not any(p.name == "model" for p in found[:-1]):
        return "whole"
    data = memoryview(head)[found[-1].start :]
    if len(data) >= WAV_HEADER_LIMIT:
        return "stream"
    if len(data) < 12:
        return "more"
    if audio_format(data) != "wav":
        return "stream"  # another format, or not audio (refused, nothing forwarded)
    try:
        wav_layout(data)
    except GatewayError:
        return "more"  # the header is not all here yet
    return "stream"


def upload(body: bytes, content_type: bytes | None, expected: int | None = None, complete: bool = True) -> Upload:
    """Read a transcription or translation request: its model and audio (400s as documented).

    Of a streamed body's head (`complete` False), `expected` is the whole body's declared length
    (Content-Length; None: unknown): the file's size is estimated from it until `finished`.
    """
    found = {p.name: p for p in reversed(parts(body, boundary(content_type), complete))}  # the first of a name wins
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
    wav = wav_layout(audio) if kind == "wav" else None
    size = len(audio)
    if not complete:
        size = max(size, (expected or 0) - file.start)
    return _sized(Upload(model, model_part, kind, size, None, 0, 0, wav, file, complete), size)


def finished(upload: Upload, file_bytes: int) -> Upload:
    """A streamed upload once its file part's bytes are counted: priced on what was relayed."""
    return _sized(upload, file_bytes, complete=True)


def _sized(upload: Upload, size: int, complete: bool | None = None) -> Upload:
    exact = upload.wav.ms(size) if upload.wav is not None else None
    estimate = size * 8 * 1000 // ESTIMATE_BITS_PER_SECOND
    cap = exact if exact is not None else size * 8 * 1000 // FLOOR_BITS_PER_SECOND
    done = upload.complete if complete is None else complete
    return replace(upload, audio_bytes=size, exact_ms=exact, estimate_ms=estimate, cap_ms=cap, complete=done)


class FileEnd:
    """Counts a streamed upload's file part as the rest of the body passes, up to its closing
    delimiter; `closed` once that was seen (a body that ends before it is cut short)."""

    def __init__(self, mark: bytes, seen: bytes) -> None:
        self._delimiter = b"\r\n--" + mark
        self._tail = b""
        self.size = 0
        self.closed = False
        self.feed(seen)

    def feed(self, chunk: bytes) -> None:
        if self.closed:
            return
        data = self._tail + chunk if self._tail else chunk
        at = data.find(self._delimiter)
        if at >= 0:
            self.size += at
            self.closed, self._tail = True, b""
            return
        keep = min(len(data), len(self._delimiter) - 1)  # a delimiter may span two chunks
        self.size += len(data) - keep
        self._tail = data[len(data) - keep :]


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
    return wav_layout(data).ms(len(data))


def wav_layout(data: memoryview | bytes) -> Wav:
    """A WAV's byte rate and where its samples are, from its `fmt ` and `data` chunks."""
    at, byte_rate = 12, 0
    while at + 8 <= min(len(data), WAV_HEADER_LIMIT):
        chunk = bytes(data[at : at + 4])
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        if chunk == b"fmt " and size >= 16 and at + 24 <= len(data):
            byte_rate = int.from_bytes(data[at + 16 : at + 20], "little")
        elif chunk == b"data":
            if byte_rate <= 0:
                break
            return Wav(byte_rate, at + 8, size)
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
