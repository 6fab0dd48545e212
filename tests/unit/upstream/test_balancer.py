"""The balancer's plan: upstreams in service, then fallbacks depth first, never an empty plan."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from costwarden.chain.target import RouteTable
from costwarden.config.models import Deployment, UpstreamHealth
from costwarden.upstream.balancer import Balancer, Target


def deployment(name: str, *urls: str, fallbacks: tuple[str, ...] = ()) -> Deployment:
    return Deployment(
        name=name,
        protocol="openai",
        upstreams=tuple(urls),
        fallbacks=fallbacks,
        health=UpstreamHealth(eject_after=1, cooldown_seconds=10),
    )


def urls(plan: Sequence[Target]) -> list[str]:
    return [t.url for t in plan]


TABLE = RouteTable(
    [
        deployment("a", "http://a1", "http://a2", fallbacks=("b", "c")),
        deployment("b", "http://b1", fallbacks=("d",)),
        deployment("c", "http://c1", fallbacks=("a",)),
        deployment("d", "http://d1"),
    ]
)


def test_plan_is_the_deployment_then_its_fallbacks_depth_first() -> None:
    balancer = Balancer(TABLE)
    a = TABLE.get("a")
    assert a is not None
    assert urls(balancer.plan(a, 0.0)) == ["http://a1", "http://a2", "http://b1", "http://d1", "http://c1"]
    assert urls(balancer.plan(a, 0.0))[:2] == ["http://a2", "http://a1"]  # round-robin within a deployment


def test_ejected_upstreams_leave_the_plan_and_fallbacks_move_up() -> None:
    balancer = Balancer(TABLE)
    a = TABLE.get("a")
    assert a is not None
    for target in balancer.plan(a, 0.0)[:2]:
        balancer.report(target, False, 0.0, "connection refused")
    assert balancer.ejected() == {"a": ["http://a1", "http://a2"]}
    assert urls(balancer.plan(a, 1.0)) == ["http://b1", "http://d1", "http://c1"]


def test_when_everything_is_ejected_the_requested_upstreams_are_tried_anyway() -> None:
    table = RouteTable([deployment("solo", "http://s1", "http://s2")])
    balancer = Balancer(table)
    solo = table.get("solo")
    assert solo is not None
    for target in balancer.plan(solo, 0.0):
        balancer.report(target, False, 0.0, "refused")
    assert sorted(urls(balancer.plan(solo, 1.0))) == ["http://s1", "http://s2"]


def test_a_success_readmits_and_no_verdict_frees_the_probe() -> None:
    table = RouteTable([deployment("solo", "http://s1")])
    balancer = Balancer(table)
    solo = table.get("solo")
    assert solo is not None
    (target,) = balancer.plan(solo, 0.0)
    balancer.report(target, False, 0.0, "refused")
    assert balancer.ejected() == {"solo": ["http://s1"]}
    (probe,) = balancer.plan(solo, 10.0)
    balancer.report(probe, None, 10.1, "")  # the client went away mid-probe
    (probe,) = balancer.plan(solo, 10.2)
    balancer.report(probe, True, 10.3, "")
    assert balancer.ejected() == {}


def test_failures_are_logged_at_warning_at_most_every_ten_seconds(caplog: pytest.LogCaptureFixture) -> None:
    table = RouteTable([deployment("solo", "http://s1", "http://s2").model_copy(update={"health": HEALTHY})])
    balancer = Balancer(table)
    solo = table.get("solo")
    assert solo is not None
    target = Target(solo, 0)
    with caplog.at_level(logging.DEBUG, logger="costwarden.upstream.balancer"):
        for step in range(30):  # 30 failures in 15 s, never enough to eject
            balancer.report(target, False, step * 0.5, "connection refused")
            balancer.report(target, True, step * 0.5 + 0.1, "")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["upstream http://s1 of 'solo' failed: connection refused"] * 2
    assert sum(1 for r in caplog.records if r.levelno == logging.DEBUG) == 28


HEALTHY = UpstreamHealth(eject_after=100, cooldown_seconds=10)


def test_a_variant_falls_back_to_its_original_then_the_originals_fallbacks() -> None:
    gpt = Deployment.model_validate(
        {
            "name": "gpt",
            "protocol": "openai",
            "upstream": "http://gpt1",
            "fallbacks": ["d"],
            "health": {"eject_after": 1, "cooldown_seconds": 10},
            "variants": [{"name": "mini", "upstreams": ["http://mini1", "http://mini2"]}],
        }
    )
    table = RouteTable([gpt, deployment("d", "http://d1")])
    balancer = Balancer(table)
    [mini] = table.variants("gpt")
    assert (mini.variant, mini.pool, mini.deployment.name) == ("mini", "gpt~mini", "gpt")
    assert urls(balancer.plan(mini, 0.0)) == ["http://mini1", "http://mini2", "http://gpt1", "http://d1"]
    for target in balancer.plan(mini, 0.0)[:2]:  # the variant's upstreams are kept apart from the original's
        balancer.report(target, False, 0.0, "connection refused")
    assert balancer.ejected() == {"gpt~mini": ["http://mini1", "http://mini2"]}  # a pool of its own
    assert urls(balancer.plan(mini, 1.0)) == ["http://gpt1", "http://d1"]
    original = table.get("gpt")
    assert original is not None and urls(balancer.plan(original, 1.0)) == ["http://gpt1", "http://d1"]


def test_one_upstream_without_fallbacks_has_one_plan_made_once_while_it_is_in_service() -> None:
    table = RouteTable([deployment("solo", "http://s1"), deployment("pair", "http://p1", "http://p2")])
    balancer = Balancer(table)
    solo, pair = table.get("solo"), table.get("pair")
    assert solo is not None and pair is not None
    plan = balancer.plan(solo, 0.0)
    assert urls(plan) == ["http://s1"] and balancer.plan(solo, 0.0) is plan  # nothing made per request
    assert balancer.plan(pair, 0.0) is not balancer.plan(pair, 0.0)
    balancer.report(plan[0], False, 0.0, "connection refused")  # ejected: the planned way again
    assert balancer.ejected() == {"solo": ["http://s1"]}
    assert urls(balancer.plan(solo, 1.0)) == ["http://s1"]  # the last resort, still tried
    probe = balancer.plan(solo, 11.0)  # cool-down over: a half-open probe
    assert probe is not plan
    balancer.report(probe[0], True, 11.0, "")
    assert balancer.ejected() == {} and balancer.plan(solo, 12.0) is plan
