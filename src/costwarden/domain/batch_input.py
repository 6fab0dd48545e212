"""A batch's input file: JSONL, one request per line. Valid lines become jobs, bad lines errors.

Pure: bytes in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

MAX_CUSTOM_ID = 512


@dataclass(frozen=True, slots=True)
class LineError:
    """An input line that will not run: reported in the error file under its custom_id (if any)."""

    line: int  # 1-based
    custom_id: str | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One valid input line: a request to run through the chain."""

    line: int  # 1-based
    custom_id: str
    method: str
    url: str
    body: bytes  # the request body as JSON


@dataclass(frozen=True, slots=True)
class ParsedInput:
    jobs: tuple[JobSpec, ...]
    errors: tuple[LineError, ...]


def parse_input(data: bytes, endpoint: str) -> ParsedInput:
    """Read a batch input file: one `{"custom_id", "method", "url", "body"}` object per line.

    A malformed line, a line for another endpoint than the batch's, and a repeated custom_id (the
    later ones) become errors; the rest are jobs. Blank lines are skipped.
    """
    jobs: list[JobSpec] = []
    errors: list[LineError] = []
    seen: set[str] = set()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        outcome = _parse_line(number, raw, endpoint)
        if isinstance(outcome, LineError):
            errors.append(outcome)
        elif outcome.custom_id in seen:
            message = f"custom_id {outcome.custom_id!r} is used by an earlier line; each must be unique"
            errors.append(LineError(number, outcome.custom_id, "duplicate_custom_id", message))
        else:
            seen.add(outcome.custom_id)
            jobs.append(outcome)
    return ParsedInput(tuple(jobs), tuple(errors))


def _parse_line(number: int, raw: bytes, endpoint: str) -> JobSpec | LineError:
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return LineError(number, None, "invalid_json_line", f"line {number} is not valid JSON: {exc}")
    if not isinstance(item, dict):
        return LineError(number, None, "invalid_json_line", f"line {number} is not a JSON object")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        message = f"line {number}: custom_id must be a non-empty string of at most {MAX_CUSTOM_ID} characters"
        return LineError(number, None, "invalid_custom_id", message)
    method, url, body = item.get("method"), item.get("url"), item.get("body")
    if method != "POST":
        return LineError(number, custom_id, "invalid_method", f"line {number}: method must be POST")
    if url != endpoint:
        message = f"line {number}: url must be the batch's endpoint {endpoint}"
        return LineError(number, custom_id, "invalid_url", message)
    if not isinstance(body, dict):
        return LineError(number, custom_id, "invalid_body", f"line {number}: body must be a JSON object")
    if not isinstance(body.get("model"), str):
        return LineError(number, custom_id, "missing_model", f"line {number}: body.model must be a string")
    if body.get("stream") is True:
        return LineError(number, custom_id, "stream_not_supported", f"line {number}: a batch request cannot stream")
    return JobSpec(number, custom_id, method, url, orjson.dumps(body))
