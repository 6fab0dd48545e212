"""Config of realtime jobs: the `queue` budget action, who may send X-Costwarden-Priority, and the
callback secret; errors name file, line and key."""

from __future__ import annotations

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
governance:
  budgets:
    - id: search-day
      scope: {team: search}
      window: day
      limit_usd: 10
      action: queue
      queue: {exempt_keys: [k-ui], exempt_teams: [search]}
batch:
  enabled: true
  priority_keys: [k-nightly]
  priority_teams: [search]
  callbacks:
    secret: a-shared-secret-of-some-length
"""


def parse(text: str) -> Config:
    return parse_config(text, SOURCE, {})


def only_problem(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def test_a_queue_budget_and_priority_settings_load() -> None:
    config = parse(VALID)
    budget = config.governance.budgets[0].budget("UTC")
    assert budget.action is Action.QUEUE and budget.fail_mode is FailMode.CLOSED  # as block: it refuses now
    assert config.governance.budgets[0].degrade_rule() is None
    assert not budget.queues_for("k-ui", "ads") and not budget.queues_for("k1", "search")
    assert budget.queues_for("k1", "ads")  # exempt: the key k-ui and the team search, no one else
    assert config.batch.priority_keys == ("k-nightly",) and config.batch.priority_teams == ("search",)
    secret = config.batch.callbacks.secret
    assert secret is not None and secret.get_secret_value() == "a-shared-secret-of-some-length"
    assert "a-shared-secret" not in repr(config.batch)  # a secret stays out of reprs and logs


def test_priority_and_callbacks_are_off_by_default() -> None:
    config = parse(VALID.split("batch:\n", maxsplit=1)[0])
    assert config.batch.priority_keys == () and config.batch.priority_teams == ()
    assert config.batch.callbacks.secret is None


def test_a_queue_budget_needs_the_batch_queue() -> None:
    problem = only_problem(VALID.replace("  enabled: true", "  enabled: false"))
    assert problem.startswith(f"{SOURCE}:15: governance.budgets[0].action: ")
    assert "`batch.enabled` is false" in problem


def test_a_priority_team_must_be_declared() -> None:
    problem = only_problem(VALID.replace("priority_teams: [search]", "priority_teams: [serch]"))
    assert problem.startswith(f"{SOURCE}:20: batch.priority_teams[0]: ")
    assert "unknown team 'serch'" in problem


def test_a_short_callback_secret_is_refused() -> None:
    problem = only_problem(VALID.replace("a-shared-secret-of-some-length", "short"))
    assert problem.startswith(f"{SOURCE}:22: batch.callbacks.secret: ")


def test_an_exempt_team_must_be_declared() -> None:
    problem = only_problem(VALID.replace("exempt_teams: [search]", "exempt_teams: [serch]"))
    assert problem.startswith(f"{SOURCE}:16: governance.budgets[0].queue.exempt_teams[0]: ")


def test_queue_settings_need_the_queue_action() -> None:
    problem = only_problem(VALID.replace("action: queue", "action: block"))
    assert problem.startswith(f"{SOURCE}:11: governance.budgets[0]: ") and "only for action: queue" in problem


def test_an_unknown_action_names_the_choices() -> None:
    problem = only_problem(VALID.replace("action: queue", "action: defer"))
    assert problem.startswith(f"{SOURCE}:15: governance.budgets[0].action: ") and "'queue'" in problem


def test_queue_retention_is_off_by_default_and_loads() -> None:
    assert parse(VALID).batch.retention_days is None
    config = parse(VALID + "  retention_days: 30\n  retention_batch: 500\n  retention_every_seconds: 600\n")
    assert (config.batch.retention_days, config.batch.retention_batch) == (30, 500)
    assert config.batch.retention_every_seconds == 600


@pytest.mark.parametrize(
    ("setting", "key", "says"),
    [
        # under a day: a client polling its batch could miss the results
        ("retention_days: 0.5", "batch.retention_days", "greater than or equal to 1"),
        ("retention_days: thirty", "batch.retention_days", "valid number"),
        ("retention_batch: 0", "batch.retention_batch", "greater than 0"),
        ("retention_every_seconds: -1", "batch.retention_every_seconds", "greater than or equal to 0"),
        ("retention: 30", "batch.retention", "not permitted"),
    ],
)
def test_bad_queue_retention_names_file_line_and_key(setting: str, key: str, says: str) -> None:
    problem = only_problem(VALID + f"  {setting}\n")
    assert problem.startswith(f"{SOURCE}:23: {key}: ") and says in problem, problem
