"""The report process's loop (`main`, which storage/report_process.py starts in a child):
read a pickled `(function, args)` from stdin, answer `(True, result)` or `(False, error)` on stdout,
until stdin closes (the gateway stopped or died)."""

from __future__ import annotations

import os

# Background work: when the machine's cores are all busy, the gateway's threads run first (at the same
# priority, a report that had a core, its process's start included, held the event loop back 14-23 ms).
# Set before the imports below: they are most of the child's start.
NICE = 10
os.nice(NICE)

import pickle  # noqa: E402
import sys  # noqa: E402
from typing import IO  # noqa: E402

from costwarden.storage.report_process import HEAD, framed, read_exactly  # noqa: E402


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    while True:
        head = read_exactly(requests, HEAD)
        if head is None:
            return
        body = read_exactly(requests, int.from_bytes(head, "big"))
        if body is None:
            return
        try:
            function, args = pickle.loads(body)
            reply = framed((True, function(*args)))
        except Exception as exc:
            try:
                reply = framed((False, exc))
            except Exception:  # an error that does not pickle: its words do
                reply = framed((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        replies.write(reply)
        replies.flush()


def main() -> None:
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever else prints goes to stderr, not into the replies
    serve(sys.stdin.buffer, replies)
