"""`costwarden budgets set` speaks in its own options (issue 6): a bad value names the option
(`--rolling-seconds`, `--limit-usd`), and scope names as the option spells them (`key`, `env`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from costwarden.cli.main import app

CONFIG = """\
deployments:
  - name: chat
    protocol: openai
    upstream: http://127.0.0.1:9
    pricing: {input_per_1m: "0.5", output_per_1m: "1.5"}
storage:
  ledger: sqlite:///LEDGER
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "costwarden.yaml"
    path.write_text(CONFIG.replace("/LEDGER", str(tmp_path / "ledger.db")))
    return path


@pytest.mark.parametrize(
    ("options", "says", "not_says"),
    [
        (["--window", "rolling"], "--rolling-seconds is required for --window rolling", "rolling_seconds"),
        (["--limit-usd", "-1"], "--limit-usd: Input should be greater than 0", "limit_usd"),
        (["--scope", "owner=x"], "key (key_id)", "  key_id,"),
        (["--limit-tokens", "0"], "--limit-tokens:", "limit_tokens"),
    ],
)
def test_set_names_the_option_at_fault(config: Path, options: list[str], says: str, not_says: str) -> None:
    args = ["budgets", "set", "b1", "--limit-usd", "1", *options, "-c", str(config)]
    if options[0] == "--limit-usd":
        args = ["budgets", "set", "b1", *options, "-c", str(config)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert says in text and not_says not in text, text


def test_a_good_budget_is_set_and_listed(config: Path) -> None:
    runner = CliRunner()
    args = ["budgets", "set", "b1", "--limit-usd", "2", "--scope", "key=k1", "-c", str(config)]
    assert runner.invoke(app, args).exit_code == 0
    listed = runner.invoke(app, ["budgets", "list", "-c", str(config)], env={"COLUMNS": "300"})
    assert listed.exit_code == 0 and "key_id=k1" in listed.output and "0.0%" in listed.output


def test_a_degrade_budget_cannot_be_set_at_run_time(config: Path) -> None:
    # Its variants and hysteresis live in the config file; stored, it would act as alert_only.
    args = ["budgets", "set", "b1", "--limit-usd", "2", "--action", "degrade", "-c", str(config)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert "action degrade is declared in the config file" in " ".join(result.output.split())
