"""`server.workers`: more than one needs the shared state store, refused at load with file:line and key."""

from __future__ import annotations

import pytest

from costwarden.config.loader import ConfigError, parse_config

BASE = "deployments:\n  - {name: chat, protocol: openai, upstream: 'http://127.0.0.1:9'}\n"


def test_several_workers_without_the_shared_state_store_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + "server:\n  workers: 2\n", "gw.yaml")
    assert "gw.yaml:4: server.workers: 2 workers need the shared state store" in str(caught.value)


def test_several_workers_with_the_shared_state_store_load() -> None:
    config = parse_config(BASE + "state: redis://127.0.0.1:6379/0\nserver:\n  workers: 4\n")
    assert config.server.workers == 4


def test_one_worker_is_the_default() -> None:
    assert parse_config(BASE).server.workers == 1
