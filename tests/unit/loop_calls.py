"""Counting `asyncio.get_running_loop()` calls: in CPython 3.11 each one is a getpid() system call,
which the request path avoids (the spool and an upstream connection keep their loop)."""

from __future__ import annotations

import asyncio

import pytest


def count_loop_lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets one item per `asyncio.get_running_loop()` call until `monkeypatch` is undone."""
    asked: list[int] = []
    real = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        asked.append(1)
        return real()

    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    return asked
