"""When a realtime request is queued as a job and answered `202` instead of served now.

Two ways in: a `queue` budget that would refuse it, or `X-Costwarden-Priority: batch` from a key
allowed to send it. Only what the batch runner can run may be queued: a non-streamed OpenAI JSON
request to one of the batch endpoints. Pure: the chain (chain/defer.py) acts on these answers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never
from urllib.parse import urlsplit

from costwarden.domain.batch import ENDPOINTS
from costwarden.domain.budget import Action

PRIORITY_BATCH = b"batch"
MAX_CALLBACK_URL = 2048


class QueueReason(StrEnum):
    """Why a request was queued (a metric label)."""

    BUDGET = "budget"  # a `queue` budget would have refused it
    PRIORITY = "priority"  # X-Costwarden-Priority: batch


@dataclass(frozen=True, slots=True)
class NotQueued:
    """Why a request asking to be queued is refused: an HTTP status, an error code, a message."""

    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class DueCallback:
    """A finished job's callback to deliver: whose job (its team reads it), where, and the how-many-th try."""

    job_id: str
    team: str
    url: str
    attempt: int  # 1 for the first


def queueable(endpoint: str, stream: bool) -> NotQueued | None:
    """None when the batch runner can run this request later; else why not."""
    if endpoint not in ENDPOINTS:
        return NotQueued(400, "not_queueable", f"only {', '.join(ENDPOINTS)} can be queued, not {endpoint[:100]}")
    if stream:
        return NotQueued(400, "not_queueable", "a streamed request (stream: true) cannot be queued")
    return None


def queue_on_refusal(action: Action, endpoint: str, stream: bool, is_job: bool) -> bool:
    """Whether a request a budget with `action` refuses is queued instead of refused (429).

    A streamed request, or one the batch runner cannot run, gets the block answer; so does a
    queued job's own run (it waits in the queue, as every batch job refused by a budget does)."""
    match action:
        case Action.QUEUE:
            return not is_job and queueable(endpoint, stream) is None
        case Action.BLOCK | Action.ALERT_ONLY | Action.DEGRADE:
            return False
        case _:
            assert_never(action)


def priority(header: bytes | None, allowed: bool, key_id: str, endpoint: str, stream: bool) -> NotQueued | bool:
    """`X-Costwarden-Priority`: True to queue the request, False when absent, else the refusal
    (an unknown value 400, a key not allowed 403, a request that cannot be queued 400)."""
    if header is None:
        return False
    if header.strip().lower() != PRIORITY_BATCH:
        shown = header[:40].decode("latin-1")
        return NotQueued(400, "invalid_priority", f"X-Costwarden-Priority must be 'batch', not {shown!r}")
    if not allowed:
        message = f"key {key_id!r} may not queue requests with X-Costwarden-Priority"
        return NotQueued(403, "priority_not_allowed", message)
    problem = queueable(endpoint, stream)
    return True if problem is None else problem


def callback_problem(url: str) -> str | None:
    """None when `url` may receive a job's result: https, or http to a loopback address (tests,
    sidecars); at most MAX_CALLBACK_URL characters, with a host and no user or password in it."""
    if len(url) > MAX_CALLBACK_URL:
        return f"the callback URL is longer than {MAX_CALLBACK_URL} characters"
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return "the callback URL holds spaces, control or non-ASCII characters (percent-encode them)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the callback URL is not a valid URL"
    del port  # read only to validate it
    host = parts.hostname
    if not host:
        return "the callback URL has no host"
    if parts.username is not None or parts.password is not None:
        return "the callback URL must not hold a user name or password"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _loopback(host):
        return None
    return "the callback URL must be https (http only to a loopback address)"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
