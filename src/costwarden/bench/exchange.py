"""One timed request: send a body, read the reply (an SSE stream chunk by chunk), and say what it
took: latency, time to first token, time per output token, usage, the gateway's metered cost."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import aiohttp
import orjson

from costwarden.bench.payloads import Payload
from costwarden.domain.usage import NO_USAGE, Usage
from costwarden.protocols.openai import usage_from

COST_HEADER = "x-costwarden-cost-usd"
_COST_COMMENT = b"cost_usd="


@dataclass(frozen=True, slots=True)
class Sample:
    """One request's outcome. Times are seconds; `late_s` is how late the generator sent it."""

    sent_at: float  # seconds since the run started
    late_s: float
    latency_s: float
    status: int  # 0: no HTTP response
    error: str | None  # None, or a kind: http_429, http_5xx..., connect, timeout, disconnect, stream_error, stream_cut
    usage: Usage
    ttft_s: float | None = None
    tpot_s: float | None = None
    metered_usd: Decimal | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    headers: dict[str, str]
    stream: bool
    timeout_s: float = 60.0


async def send(
    session: aiohttp.ClientSession, target: Target, payload: Payload, sent_at: float, late_s: float
) -> Sample:
    """Post one payload and time it; never raises for a failed request (the sample says why)."""
    start = time.perf_counter()
    try:
        async with session.post(target.url, data=payload.body, headers=target.headers) as resp:
            if resp.status != 200:
                await resp.read()
                return _failed(sent_at, late_s, start, resp.status, f"http_{resp.status}")
            if target.stream:
                return await _stream(resp, sent_at, late_s, start)
            raw = await resp.read()
            latency = time.perf_counter() - start
            usage = _usage(raw) if payload.items == 0 else Usage(items=payload.items)
            metered = _decimal(resp.headers.get(COST_HEADER))
            return Sample(sent_at, late_s, latency, 200, None, usage, metered_usd=metered)
    except TimeoutError:
        return _failed(sent_at, late_s, start, 0, "timeout")
    except aiohttp.ClientConnectorError:
        return _failed(sent_at, late_s, start, 0, "connect")
    except (aiohttp.ClientError, ConnectionError):
        return _failed(sent_at, late_s, start, 0, "disconnect")


async def _stream(resp: aiohttp.ClientResponse, sent_at: float, late_s: float, start: float) -> Sample:
    token_times: list[float] = []
    usage: Usage | None = None
    metered: Decimal | None = None
    error: str | None = "stream_cut"  # until [DONE] arrives
    async for line in resp.content:
        now = time.perf_counter()
        if line.startswith(b":"):
            at = line.find(_COST_COMMENT)
            if at >= 0:
                metered = _decimal(line[at + len(_COST_COMMENT) :].split()[0].decode("ascii", "replace"))
            continue
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            error = None
            break
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        if "error" in event:
            error = "stream_error"
            break
        if _has_text(event):
            token_times.append(now)
        usage = usage_from(event) or usage
    latency = time.perf_counter() - start
    ttft = token_times[0] - start if token_times else None
    tpot = (token_times[-1] - token_times[0]) / (len(token_times) - 1) if len(token_times) > 1 else None
    if usage is None:
        usage = Usage(output_tokens=len(token_times))
    return Sample(sent_at, late_s, latency, 200, error, usage, ttft, tpot, metered)


def _has_text(event: dict[str, object]) -> bool:
    choices = event.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if isinstance(choice, dict):
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(text, str) and text:
                return True
    return False


def _usage(raw: bytes) -> Usage:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NO_USAGE
    return usage_from(body) or NO_USAGE


def _decimal(text: str | None) -> Decimal | None:
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _failed(sent_at: float, late_s: float, start: float, status: int, kind: str) -> Sample:
    return Sample(sent_at, late_s, time.perf_counter() - start, status, kind, NO_USAGE)
