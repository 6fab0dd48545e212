"""Deployment `health:` and `fallbacks:`: defaults, bounds, and fallbacks that must resolve."""

from __future__ import annotations

import pytest

from costwarden.config import Config, ConfigError, parse_config

SOURCE = "costwarden.yaml"


def deployments(*entries: str) -> str:
    return "deployments:\n" + "".join(entries)


def dep(name: str, protocol: str = "openai", extra: str = "") -> str:
    return f"  - name: {name}\n    protocol: {protocol}\n    upstream: http://127.0.0.1:9000\n{extra}"


def parse(text: str) -> Config:
    return parse_config(text, SOURCE, {})


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value.problems


def test_defaults_keep_every_upstream_in_service_until_it_fails() -> None:
    config = parse(deployments(dep("a")))
    (a,) = config.deployments
    assert (a.health.eject_after, a.health.cooldown_seconds, a.fallbacks) == (5, 30.0, ())


def test_health_and_fallbacks_parse() -> None:
    text = deployments(
        dep("a", extra="    health: {eject_after: 2, cooldown_seconds: 1.5}\n    fallbacks: [b, c]\n"),
        dep("b", extra="    fallbacks: [c]\n"),
        dep("c"),
    )
    a = parse(text).deployments[0]
    assert (a.health.eject_after, a.health.cooldown_seconds, a.fallbacks) == (2, 1.5, ("b", "c"))


@pytest.mark.parametrize(
    ("health", "field"),
    [("{eject_after: 0}", "eject_after"), ("{cooldown_seconds: 0}", "cooldown_seconds"), ("{probe: 1}", "probe")],
)
def test_health_bounds(health: str, field: str) -> None:
    (problem,) = problems(deployments(dep("a", extra=f"    health: {health}\n")))
    assert f"deployments[0].health.{field}" in problem, problem


def test_an_unknown_fallback_names_its_line() -> None:
    (problem,) = problems(deployments(dep("a", extra="    fallbacks: [b, nope]\n"), dep("b")))
    assert problem.startswith(f"{SOURCE}:5: deployments[0].fallbacks[1]: "), problem
    assert "unknown deployment 'nope'" in problem


def test_a_fallback_of_another_protocol() -> None:
    (problem,) = problems(deployments(dep("a", extra="    fallbacks: [b]\n"), dep("b", "v2")))
    assert "deployments[0].fallbacks[0]" in problem and "speaks v2, not openai" in problem


@pytest.mark.parametrize("fallbacks", ["[a]", "[b, b]"])
def test_a_fallback_to_itself_or_twice(fallbacks: str) -> None:
    found = problems(deployments(dep("a", extra=f"    fallbacks: {fallbacks}\n"), dep("b")))
    assert any("repeats" in p for p in found), found


def test_a_cycle_of_fallbacks_is_refused() -> None:
    text = deployments(
        dep("a", extra="    fallbacks: [b]\n"),
        dep("b", extra="    fallbacks: [c]\n"),
        dep("c", extra="    fallbacks: [a]\n"),
    )
    found = problems(text)
    assert any("a -> b -> c -> a" in p for p in found), found
