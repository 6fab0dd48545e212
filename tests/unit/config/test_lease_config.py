"""`governance.lease_ttl_seconds`: how long a dead leader keeps the governor's lease; refused with file:line and
key when a live holder could lose it between two renewals."""

from __future__ import annotations

import pytest

from costwarden.config.loader import ConfigError, parse_config
from costwarden.storage.factory import open_lease

BASE = "deployments:\n  - {name: chat, protocol: openai, upstream: 'http://127.0.0.1:9'}\n"


def test_the_default_is_fifteen_seconds_or_three_ticks() -> None:
    assert parse_config(BASE).governance.lease_ttl_s == 15.0
    slow = parse_config(BASE + "governance:\n  evaluate_every_seconds: 10\n")
    assert slow.governance.lease_ttl_s == 30.0


def test_a_configured_ttl_is_the_leases() -> None:
    config = parse_config(
        BASE + "state: redis://127.0.0.1:6379/0\ngovernance:\n  evaluate_every_seconds: 0.5\n  lease_ttl_seconds: 3\n"
    )
    assert config.governance.lease_ttl_s == 3.0
    assert open_lease(config.state, ttl_s=config.governance.lease_ttl_s).ttl_s == 3.0


def test_a_ttl_shorter_than_two_ticks_is_refused_with_its_place() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + "governance:\n  evaluate_every_seconds: 5\n  lease_ttl_seconds: 6\n", "gw.yaml")
    assert "gw.yaml:" in str(caught.value)
    assert "lease_ttl_seconds (6) must be at least twice evaluate_every_seconds (5)" in str(caught.value)
