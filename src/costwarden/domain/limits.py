"""The ranges every ledger value must fit: 64-bit counts, 32-bit status codes, nano-dollar cost.

One home for the bounds the protocol edge, the record stage and the recorder all check, so a
number that cannot be stored is refused or clamped before it can stall a batch.
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal

from costwarden.domain.money import NANO, quantize
from costwarden.domain.record import UsageRecord

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
MAX_COST_USD = Decimal(INT64_MAX) * NANO  # cost_nanos is a signed 64-bit integer in SQLite
MAX_TEXT = 256  # model names and other client-chosen strings kept in a ledger row
OUT_OF_RANGE = "ledger_value_out_of_range"

COUNT_FIELDS = (
    "input_tokens", "output_tokens", "cached_tokens", "items", "request_bytes", "response_bytes",
    "reasoning_tokens", "images", "audio_ms", "characters", "documents",
)  # fmt: skip
_STATUS_FIELDS = ("status", "upstream_status")
_FLOAT_FIELDS = ("started_at", "ended_at", "latency_ms", "upstream_ms")
_TEXT_FIELDS = (
    "request_id", "key_id", "team", "project", "environment", "deployment", "protocol", "endpoint", "method",
    "model", "error_code", "pricing_basis", "client_request_id",
)  # fmt: skip


def is_count(value: object, limit: int = INT64_MAX) -> bool:
    """A non-negative integer (not a bool) no larger than `limit`."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def storable(record: UsageRecord) -> bool:
    """True when every value fits its column: the cheap check the request path makes (~2 µs)."""
    r = record
    for value in (
        r.input_tokens, r.output_tokens, r.cached_tokens, r.items, r.request_bytes, r.response_bytes,
        r.reasoning_tokens, r.images, r.audio_ms, r.characters, r.documents,
    ):  # fmt: skip
        if type(value) is not int or not 0 <= value <= INT64_MAX:
            return False
    if type(r.status) is not int or not 0 <= r.status <= INT32_MAX:
        return False
    upstream = r.upstream_status
    if upstream is not None and (type(upstream) is not int or not 0 <= upstream <= INT32_MAX):
        return False
    for number in (r.started_at, r.ended_at, r.latency_ms, r.upstream_ms):
        if number is not None and (type(number) is not float or not math.isfinite(number)):
            return False
    cost = r.cost_usd
    if type(cost) is not Decimal or not cost.is_finite() or not 0 <= cost <= MAX_COST_USD:
        return False
    if cost.as_tuple().exponent < -9:  # type: ignore[operator]  # finer than the ledger's nano-dollar
        return False
    texts = (
        r.request_id, r.key_id, r.team, r.project, r.environment, r.deployment, r.protocol, r.endpoint, r.method,
        r.model, r.error_code, r.pricing_basis, r.client_request_id,
    )  # fmt: skip
    tags = r.tags
    if type(tags) is not dict:
        return False
    strings = [t for t in texts if t is not None]
    strings.extend(tags)
    strings.extend(tags.values())
    for text in strings:
        if type(text) is not str or len(text) > MAX_TEXT:
            return False
    joined = "".join(strings)  # one scan for NUL and one for non-ASCII, over all the text at once
    return "\x00" not in joined and (joined.isascii() or _utf8(joined))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def violations(record: UsageRecord) -> list[str]:
    """Why this record cannot be stored as it is (empty when it fits every column)."""
    if storable(record):
        return []
    found = [f"{name}={getattr(record, name)!r}" for name in COUNT_FIELDS if not is_count(getattr(record, name))]
    for name in _STATUS_FIELDS:
        value = getattr(record, name)
        if not (value is None and name == "upstream_status") and not is_count(value, INT32_MAX):
            found.append(f"{name}={value!r}")
    for name in _FLOAT_FIELDS:
        value = getattr(record, name)
        if not (value is None and name == "upstream_ms") and not _finite(value):
            found.append(f"{name}={value!r}")
    cost = record.cost_usd
    if not isinstance(cost, Decimal) or not cost.is_finite() or not 0 <= cost <= MAX_COST_USD:
        found.append(f"cost_usd={cost!r}")
    for name in _TEXT_FIELDS:
        value = getattr(record, name)
        if value is not None and (not isinstance(value, str) or _clean(value) != value):
            found.append(f"{name} is not storable text")
    tags = record.tags
    if not isinstance(tags, dict) or any(
        not isinstance(k, str) or not isinstance(v, str) or _clean(k) != k or _clean(v) != v for k, v in tags.items()
    ):
        found.append("tags are not storable text")
    return found


def fit(record: UsageRecord) -> UsageRecord:
    """The record made storable: numbers clamped into range (then `error_code` says so), text
    stripped of NUL and lone surrogates and cut to MAX_TEXT characters. A fitting record is returned
    unchanged."""
    if storable(record):
        return record
    changes: dict[str, object] = {}
    for name in COUNT_FIELDS:
        value = getattr(record, name)
        if not is_count(value):
            changes[name] = _clamp(value, INT64_MAX)
    for name in _STATUS_FIELDS:
        value = getattr(record, name)
        if not (value is None and name == "upstream_status") and not is_count(value, INT32_MAX):
            changes[name] = _clamp(value, INT32_MAX)
    for name in _FLOAT_FIELDS:
        value = getattr(record, name)
        if not (value is None and name == "upstream_ms") and not _finite(value):
            changes[name] = 0.0
    cost = record.cost_usd
    if not isinstance(cost, Decimal) or not cost.is_finite() or not 0 <= cost <= MAX_COST_USD:
        too_high = isinstance(cost, Decimal) and not cost.is_nan() and cost > MAX_COST_USD
        changes["cost_usd"] = MAX_COST_USD if too_high else Decimal(0)
    if changes:
        changes["error_code"] = OUT_OF_RANGE
    if "cost_usd" not in changes and cost != quantize(cost):
        changes["cost_usd"] = quantize(cost)  # the ledger's quantum, as every stored amount
    for name in _TEXT_FIELDS:
        value = changes.get(name, getattr(record, name))
        if value is not None:
            changes[name] = _clean(str(value))
    changes["tags"] = {_clean(str(k)): _clean(str(v)) for k, v in dict(record.tags).items()}
    return replace(record, **changes)  # type: ignore[arg-type]


def _clamp(value: object, limit: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, min(value, limit))
    return 0


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _clean(text: str) -> str:
    cleaned = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return cleaned[:MAX_TEXT]
