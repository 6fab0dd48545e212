"""Fault injection chosen by model name, so tests can ask for failures through any client.

error-<status>  answer that HTTP status (400-599) with an OpenAI-shaped error, e.g. error-500
slow-<ms>       wait that long before answering, streaming or not, e.g. slow-3000
drop-<n>        streaming only: close the connection after n content chunks, without [DONE]
html-<status>   answer that HTTP status (200-599) with an HTML page, as a proxy in the way would
cut-<n>         streaming only: end the stream cleanly after n content chunks, without [DONE]
inflate-<e>     chat only: report 10^e prompt tokens in the usage (an upstream's absurd count)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATTERN = re.compile(r"(error|slow|drop|cut|html|inflate)-(\d{1,6})")


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do wrong for one request; NONE does nothing."""

    error_status: int | None = None
    html_status: int | None = None
    delay_s: float = 0.0
    drop_after: int | None = None
    cut_cleanly: bool = False  # end the body properly at drop_after instead of breaking the connection
    reported_prompt_tokens: int | None = None


NONE = Fault()


def fault_for(model: str) -> Fault:
    """The fault a model name asks for (NONE for an ordinary name)."""
    match = _PATTERN.fullmatch(model)
    if match is None:
        return NONE
    kind, number = match.group(1), int(match.group(2))
    if kind == "error":
        return Fault(error_status=number) if 400 <= number <= 599 else NONE
    if kind == "html":
        return Fault(html_status=number) if 200 <= number <= 599 else NONE
    if kind == "slow":
        return Fault(delay_s=number / 1000.0)
    if kind == "inflate":
        return Fault(reported_prompt_tokens=10 ** min(number, 30))
    return Fault(drop_after=number, cut_cleanly=kind == "cut")
