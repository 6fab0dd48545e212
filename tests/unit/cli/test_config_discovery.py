"""Every command finds its config through --config or COSTWARDEN_CONFIG, and says so when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from costwarden.cli.main import app

CONFIG = """\
teams:
  - {name: search, projects: [ranking]}
storage: {ledger: "sqlite:///./ledger.db", spool_dir: spool}
deployments:
  - {name: gpt, protocol: openai, upstream: "http://127.0.0.1:9000"}
"""
CREATE = ["keys", "create", "--team", "search", "--project", "ranking", "--env", "prod"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config in one folder; the commands run from another, with no COSTWARDEN_CONFIG."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "costwarden.yaml").write_text(CONFIG)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.delenv("COSTWARDEN_CONFIG", raising=False)
    return tmp_path


def test_keys_created_elsewhere_land_in_the_config_files_ledger(runner: CliRunner, elsewhere: Path) -> None:
    config = str(elsewhere / "etc" / "costwarden.yaml")
    created = runner.invoke(app, [*CREATE, "--config", config])
    assert created.exit_code == 0, created.output
    assert (elsewhere / "etc" / "ledger.db").exists()
    assert not (elsewhere / "work" / "ledger.db").exists()  # no stray database in the cwd
    key_id = created.output.split("key id ")[1].split()[0]

    listed = runner.invoke(app, ["keys", "list"], env={"COSTWARDEN_CONFIG": config})
    assert listed.exit_code == 0, listed.output
    assert key_id in listed.output


@pytest.mark.parametrize(
    "argv",
    [
        ["report"],
        ["keys", "list"],
        ["keys", "revoke", "k1"],
        CREATE,
        ["budgets", "list"],
        ["budgets", "delete", "b1"],
        ["alerts"],
        ["serve"],
        ["config", "check"],
    ],
)
def test_no_config_anywhere_gets_a_hint_naming_both_ways(runner: CliRunner, elsewhere: Path, argv: list[str]) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert "--config" in result.output and "COSTWARDEN_CONFIG" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("argv", [["report", "--format", "json"], ["keys", "list"], ["budgets", "list"], ["alerts"]])
def test_every_command_reads_costwarden_config(runner: CliRunner, elsewhere: Path, argv: list[str]) -> None:
    result = runner.invoke(app, argv, env={"COSTWARDEN_CONFIG": str(elsewhere / "etc" / "costwarden.yaml")})
    assert result.exit_code == 0, result.output
    assert (elsewhere / "etc" / "ledger.db").exists()


def test_config_check_reads_costwarden_config_and_counts_in_english(runner: CliRunner, elsewhere: Path) -> None:
    result = runner.invoke(
        app, ["config", "check"], env={"COSTWARDEN_CONFIG": str(elsewhere / "etc" / "costwarden.yaml")}
    )
    assert result.exit_code == 0, result.output
    assert "1 deployment, 1 team, 0 keys" in result.output


def test_a_missing_file_names_where_it_came_from(runner: CliRunner, elsewhere: Path) -> None:
    result = runner.invoke(app, ["keys", "list"], env={"COSTWARDEN_CONFIG": str(elsewhere / "nope.yaml")})
    assert result.exit_code == 2
    assert "nope.yaml" in result.output and "COSTWARDEN_CONFIG" in result.output


def test_a_config_in_the_cwd_is_still_found(
    runner: CliRunner, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(elsewhere / "etc")
    assert runner.invoke(app, ["keys", "list"]).exit_code == 0
