"""Config of the response cache: global defaults, a deployment's overrides, errors with file and line."""

from __future__ import annotations

import pytest

from costwarden.config import ConfigError, parse_config
from costwarden.domain.response_cache import CachePolicy, Namespace

VALID = """\
cache:
  enabled: true
  ttl_seconds: 600
  max_entries: 500
deployments:
  - name: gpt
    protocol: openai
    upstream: http://127.0.0.1:9000
  - name: shared
    protocol: openai
    upstream: http://127.0.0.1:9000
    cache: {namespace: global, ttl_seconds: 30}
  - name: fresh
    protocol: openai
    upstream: http://127.0.0.1:9000
    cache: {enabled: false}
"""


def test_deployments_inherit_the_defaults_and_override_them() -> None:
    config = parse_config(VALID, "costwarden.yaml")
    policies = {d.name: d.cache.policy(config.cache) for d in config.deployments}
    assert policies == {
        "gpt": CachePolicy(600.0, Namespace.TEAM),
        "shared": CachePolicy(30.0, Namespace.GLOBAL),
        "fresh": None,
    }
    assert config.cache.backend == "memory" and config.cache.max_entries == 500


def test_the_cache_is_off_unless_enabled_globally_or_by_the_deployment() -> None:
    config = parse_config(VALID.replace("  enabled: true\n", ""), "costwarden.yaml")
    assert [d.cache.policy(config.cache) for d in config.deployments] == [None, None, None]
    config = parse_config(VALID.replace("  enabled: true\n", "").replace("enabled: false", "enabled: true"))
    policies = [d.cache.policy(config.cache) for d in config.deployments]
    assert policies == [None, None, CachePolicy(600.0, Namespace.TEAM)]


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (("ttl_seconds: 600", "ttl_seconds: 0"), "costwarden.yaml:3"),
        (("max_entries: 500", "max_entrees: 500"), "costwarden.yaml:4"),
        (("namespace: global", "namespace: world"), "costwarden.yaml:12"),
        (("  enabled: true", "  enabled: true\n  backend: redis"), "costwarden.yaml:3"),
    ],
)
def test_errors_name_the_file_line_and_key(edit: tuple[str, str], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(VALID.replace(*edit), "costwarden.yaml")
    [problem] = info.value.problems
    assert problem.startswith(where), problem
    assert "cache" in problem
