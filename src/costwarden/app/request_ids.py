"""The request ids of a listener (HTTP, gRPC): `domain/request_id.RequestIds` from this process's own
random bytes, drawn again in a process forked after it was made (a test harness, a pre-fork server):
ids copied with the memory would repeat the parent's."""

from __future__ import annotations

import functools
import os
import weakref

from costwarden.domain.request_id import RequestIds


def process_ids() -> RequestIds:
    """A listener's ids: time-ordered, made without a syscall per request, unique across processes."""
    ids = RequestIds(os.urandom(10))
    os.register_at_fork(after_in_child=functools.partial(_redraw, weakref.ref(ids)))
    return ids


def _redraw(ref: weakref.ReferenceType[RequestIds]) -> None:
    ids = ref()
    if ids is not None:
        ids.redraw(os.urandom(10))
