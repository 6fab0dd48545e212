"""Shared test policy: a test that needs a missing service skips on a laptop and fails in CI."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(available: bool, what: str) -> None:
    """Skip with a clear reason when `what` is missing; fail instead when running in CI."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {what} is not available", pytrace=False)
    pytest.skip(f"{what} is not available on this machine")
