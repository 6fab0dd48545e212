"""Config of cheaper variants and `degrade` budgets: valid files load; errors name file, line and key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from costwarden.config import Config, ConfigError, parse_config
from costwarden.domain.budget import Action, FailMode

SOURCE = "costwarden.yaml"
# Line numbers matter: the tests below point at them.
VALID = """\
teams:
  - name: search
    projects: [ranker]
deployments:
  - name: gpt
    protocol: openai
    upstream: http://127.0.0.1:9000
    pricing: {input_per_1m: 2.50, output_per_1m: 10}
    variants:
      - name: gpt-mini
        upstream: http://127.0.0.1:9001
        model: org/gpt-mini
        pricing: {input_per_1m: 0.15, output_per_1m: 0.60}
governance:
  budgets:
    - id: search-month
      scope: {team: search}
      limit_usd: 100
      action: degrade
      degrade:
        at: 0.8
        recover_below: 0.6
        hold_seconds: 300
        exempt_teams: [search]
        pin_keys: [k-boss]
"""


def parse(text: str) -> Config:
    return parse_config(text, SOURCE, {})


def only_problem(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def test_variants_and_a_degrade_budget_load() -> None:
    config = parse(VALID)
    [variant] = config.deployments[0].variants
    assert (variant.name, variant.model, variant.upstream_urls) == ("gpt-mini", "org/gpt-mini", ("http://127.0.0.1:9001",))
    assert variant.pricing.input_per_1m == Decimal("0.15")
    [budget] = config.governance.budgets
    rule = budget.degrade_rule()
    assert rule is not None and rule.rule().at == Decimal("0.8") and rule.pin_keys == ("k-boss",)
    domain = budget.budget("UTC")
    assert domain.action is Action.DEGRADE and domain.fail_mode is FailMode.OPEN  # it never refuses


def test_a_degrade_budget_without_settings_gets_the_defaults() -> None:
    text = VALID.split("      degrade:\n", maxsplit=1)[0]
    rule = parse(text).governance.budgets[0].degrade_rule()
    assert rule is not None
    assert (rule.at, rule.recover_below, rule.hold_seconds) == (Decimal("0.8"), Decimal("0.6"), 300.0)


def test_recovery_must_be_below_the_threshold() -> None:
    problem = only_problem(VALID.replace("recover_below: 0.6", "recover_below: 0.9"))
    assert problem.startswith(f"{SOURCE}:21: governance.budgets[0].degrade: ")
    assert "recover_below (0.9) must be below at (0.8)" in problem


def test_degrade_settings_need_the_degrade_action() -> None:
    problem = only_problem(VALID.replace("action: degrade", "action: block"))
    assert problem.startswith(f"{SOURCE}:16: governance.budgets[0]: ")
    assert "`degrade` is only for action: degrade" in problem


def test_a_variant_needs_an_upstream() -> None:
    problem = only_problem(VALID.replace("        upstream: http://127.0.0.1:9001\n", ""))
    assert problem.startswith(f"{SOURCE}:10: deployments[0].variants[0]: ")
    assert "set exactly one of `upstream`" in problem


def test_an_unknown_key_in_a_variant() -> None:
    text = VALID.replace("        model: org/gpt-mini\n", "        model: org/gpt-mini\n        colour: red\n")
    problem = only_problem(text)
    assert problem.startswith(f"{SOURCE}:13: deployments[0].variants[0].colour: ")


def test_an_exempt_team_must_be_declared() -> None:
    problem = only_problem(VALID.replace("exempt_teams: [search]", "exempt_teams: [serch]"))
    assert problem.startswith(f"{SOURCE}:24: governance.budgets[0].degrade.exempt_teams[0]: ")
    assert "unknown team 'serch'" in problem


def test_degrade_needs_a_deployment_with_variants() -> None:
    text = VALID.split("    variants:\n", maxsplit=1)[0] + "governance:" + VALID.split("governance:")[1]
    problem = only_problem(text)
    assert problem.startswith(f"{SOURCE}:14: governance.budgets[0].action: ")
    assert "has `variants` to degrade to" in problem


def test_variant_names_are_distinct() -> None:
    twice = VALID.replace(
        "    variants:\n", "    variants:\n      - name: gpt-mini\n        upstream: http://127.0.0.1:9002\n"
    )
    assert "variant names must be distinct" in only_problem(twice)


def test_levels_load_as_lists_of_thresholds() -> None:
    text = VALID.replace("at: 0.8", "at: [0.8, 0.95]").replace("recover_below: 0.6", "recover_below: [0.6, 0.85]")
    settings = parse(text).governance.budgets[0].degrade_rule()
    assert settings is not None
    rule = settings.rule()
    assert rule.levels == ((Decimal("0.8"), Decimal("0.6")), (Decimal("0.95"), Decimal("0.85")))


@pytest.mark.parametrize(
    ("at", "recover_below", "message"),
    [
        ("[0.8, 0.95]", "0.6", "both numbers, or both lists of one value per level"),
        ("[0.8, 0.95]", "[0.6]", "both numbers, or both lists of one value per level"),
        ("[]", "[]", "`at` lists at least one level"),
        ("[0.8, 0.8]", "[0.6, 0.7]", "at (0.8) of level 2 must be above level 1's (0.8)"),
        ("[0.8, 0.95]", "[0.6, 0.95]", "recover_below (0.95) must be below at (0.95) at level 2"),
    ],
)
def test_bad_levels_name_the_file_line_and_key(at: str, recover_below: str, message: str) -> None:
    text = VALID.replace("at: 0.8", f"at: {at}").replace("recover_below: 0.6", f"recover_below: {recover_below}")
    problem = only_problem(text)
    assert problem.startswith(f"{SOURCE}:21: governance.budgets[0].degrade: "), problem
    assert message in problem
