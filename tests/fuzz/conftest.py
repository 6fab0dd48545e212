"""The fuzz tests run against the same real peers as the integration tests: their fixtures, reused."""

from __future__ import annotations

from tests.integration.conftest import make_gateway, mlserver, textmodel  # noqa: F401  (fixtures)
